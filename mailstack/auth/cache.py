# -*- test-case-name: tests.auth.test_cache -*-
"""The auth cache: passdb and userdb answers kept for a while.

Positive answers live ``auth_cache_ttl`` seconds, negative ones ("unknown
user") ``auth_cache_negative_ttl``; internal failures are never cached.
``auth_cache_size`` bounds the estimated memory in bytes, evicting the
least recently used entries; 0 disables the cache (Dovecot's default).
Time comes from an injected clock (``IReactorTime``), so tests drive it
with :class:`twisted.internet.task.Clock`.

The cache holds stored password hashes, never plaintext passwords: a hit
still runs the scheme's verification.  When a cached password does not
match, the service drops the entry and asks the passdb again, so a changed
password takes effect at once (Dovecot does the same).
"""

from collections import OrderedDict

_MISSING = object()


class AuthCache:
    """A TTL + LRU cache keyed by ``(kind, user)``.

    Args:
        clock: provides ``seconds()``.
        size: the memory bound in bytes; 0 disables the cache.
        ttl: lifetime of positive entries, in seconds.
        negative_ttl: lifetime of negative (None) entries, in seconds.
    """

    def __init__(self, clock, size, ttl, negative_ttl):
        self._clock = clock
        self._size = size
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._entries = OrderedDict()  # key -> (expires, value, size)
        self._used = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self):
        """True when the cache keeps anything."""
        return self._size > 0

    def get(self, key):
        """Return ``(True, value)`` for a live entry (value may be None: negative), else ``(False, None)``."""
        item = self._entries.get(key, _MISSING)
        if item is _MISSING:
            self.misses += 1
            return False, None
        expires, value, _ = item
        if self._clock.seconds() >= expires:
            self.drop(key)
            self.misses += 1
            return False, None
        self._entries.move_to_end(key)
        self.hits += 1
        return True, value

    def put(self, key, value, size=64):
        """Store ``value`` (None for "unknown user") for its TTL; no-op when disabled."""
        if not self.enabled:
            return
        ttl = self._negative_ttl if value is None else self._ttl
        if ttl <= 0:
            return
        self.drop(key)
        self._entries[key] = (self._clock.seconds() + ttl, value, size)
        self._used += size
        while self._used > self._size and self._entries:
            _, (_, _, old_size) = self._entries.popitem(last=False)
            self._used -= old_size

    def drop(self, key):
        """Forget ``key``."""
        item = self._entries.pop(key, None)
        if item is not None:
            self._used -= item[2]

    def clear(self):
        """Forget everything (``mailstack user`` edits call this through the service)."""
        self._entries.clear()
        self._used = 0

    def __len__(self):
        return len(self._entries)
