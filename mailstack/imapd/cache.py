# -*- test-case-name: tests.imapd.test_fetch -*-
"""A bounded cache of encoded ENVELOPE, BODYSTRUCTURE and BODY per message.

Clients fetch the structure of a whole mailbox again and again (every
Thunderbird start, every ``mutt`` open); Dovecot answers from its cache
file, mailstack from this in-memory LRU, shared by the sessions of one
service.  A maildir message never changes its content: its key is the
folder's directory and the message's base name (which survives flag
renames), so entries never go stale; an expunged message's entry simply
ages out.  Size is bounded by :data:`DEFAULT_BYTES` worth of encoded values.

Header SEARCH keeps each message's header block (item ``HEADER``) in a
second cache of this class, bounded by :data:`HEADER_CACHE_BYTES` apart
from the structures (a scan over an LRU smaller than the mailbox would
evict everything): the second search of a mailbox reads no file, as
Dovecot's cache serves the fields it was searched on.  Those scans run in
the thread pool, so every operation takes the cache's lock.
"""

import collections
import threading

DEFAULT_BYTES = 64 * 1024 * 1024
HEADER_CACHE_BYTES = 48 * 1024 * 1024
_OVERHEAD = 200  # dict entry, key tuple and value tuple, roughly


class StructureCache:
    """LRU of ``(folder_path, base) -> {item: encoded bytes}``.

    Args:
        max_bytes: the bound on the encoded values kept (plus a per-entry overhead).
    """

    def __init__(self, max_bytes=DEFAULT_BYTES):
        self.max_bytes = max_bytes
        self.size = 0
        self._entries = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        """Return the cached ``{item: bytes}`` for ``key``, or None.  Any thread."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key, values):
        """Remember ``values`` (``{item: bytes}``) for ``key``, merged with what is there.  Any thread."""
        with self._lock:
            self._put(key, values)

    def _put(self, key, values):
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= _cost(entry)
            entry.update(values)
        else:
            entry = dict(values)
        self._entries[key] = entry
        self.size += _cost(entry)
        while self.size > self.max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self.size -= _cost(old)

    def __len__(self):
        return len(self._entries)


def _cost(entry):
    return _OVERHEAD + sum(len(v) for v in entry.values())
