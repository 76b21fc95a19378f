# -*- test-case-name: tests.tables.test_hash -*-
"""``hash`` and ``texthash`` tables, and the source syntax ``postmap`` compiles.

Source syntax (Postfix ``postmap(1)``, ``access(5)``, ``virtual(5)``): one
``key whitespace value`` a logical line; ``#`` comments, blank lines and
continuation lines as in :func:`mailstack.tables.base.logical_lines`.  Keys
are lower-cased (Postfix folds the key of fixed tables).  A duplicate key
keeps its first value and is reported as a warning, as Postfix's postmap
does.  A key without a value is an error (``file:line: reason``) and stops
the build; Postfix only warns and skips it.

Alias syntax (``aliases(5)``, for ``newaliases``): ``name: value, value``,
where the name may be quoted (``"name with space": ...``) and the value
continues on lines starting with white space.  Keys are the names without
the colon, lower-cased; white space runs in values outside double quotes
become one space, as Postfix's postalias does.

``hash:/path/name`` reads ``/path/name.db``, an index that ``mailstack
postmap /path/name`` writes.  The index is this module's own format, since
this Python has no dbm module that a C library backs: an open-addressing
hash table over a memory-mapped file, so a lookup is one CRC-32 and
usually one probe (about a microsecond), and nothing is parsed at open:

    magic   b"MSTAB2\0\0"
    count   uint64, little-endian: number of records
    slots   uint64: number of hash slots, a power of two >= 2 * count
    slot    slots * uint64: record offset, 0 for an empty slot;
            a key lives at the first free slot from crc32(key) & (slots - 1)
    records uint32 key length, uint32 value length, key, value (UTF-8),
            in key order (so listing needs no sort)

The file is written to a temporary name, fsynced and renamed, so a reader
sees the old or the new table, never half of one; open tables notice the
rename and reopen.  ``texthash:/path/name`` reads the source itself into
memory and re-reads it when it changes.
"""

import mmap
import os
import struct
import zlib

from twisted.logger import Logger

from mailstack.tables.base import FileTable, TableConfigError, logical_lines
from mailstack.util.atomic import replace_file

log = Logger(namespace="mailstack.tables")

MAGIC = b"MSTAB2\0\0"
_HEADER = struct.Struct("<8sQQ")
_RECORD = struct.Struct("<II")
_OFFSET = struct.Struct("<Q")


def parse_source(text, source, warn=None):
    """Parse postmap source text into ``{key: value}``.

    Args:
        text: the file contents.
        source: the file name for messages.
        warn: called with each warning text (duplicate keys, ``key: value``
            records); ignored when None.

    Raises:
        TableConfigError: for a line without a value, as ``file:line: reason``.
    """
    entries = {}
    for lineno, line in logical_lines(text, source):
        parts = line.split(None, 1)
        if len(parts) < 2:
            raise TableConfigError("%s:%d: expected format: key whitespace value" % (source, lineno))
        key, value = parts[0].lower(), parts[1].strip()
        if key.endswith(":") and warn:
            warn('%s:%d: record is in "key: value" format; is this an alias file?' % (source, lineno))
        if key in entries:
            if warn:
                warn('%s:%d: duplicate entry: "%s" (the first one is used)' % (source, lineno, key))
            continue
        entries[key] = value
    return entries


def _collapse_space(text):
    """Collapse each run of white space outside double quotes to one space, as postalias does."""
    out, quoted, space = [], False, False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char.isspace() and not quoted:
            space = True
            continue
        if space and out:
            out.append(" ")
        space = False
        out.append(char)
    return "".join(out)


def parse_aliases(text, source, warn=None):
    """Parse aliases(5) text (``name: value, value``) into ``{name: value}``.

    Raises:
        TableConfigError: for a line without ``name:``, as ``file:line: reason``.
    """
    entries = {}
    for lineno, line in logical_lines(text, source):
        if line.startswith('"'):
            end = line.find('"', 1)
            if end < 0 or not line[end + 1:].lstrip().startswith(":"):
                raise TableConfigError('%s:%d: expected "name": value' % (source, lineno))
            name, rest = line[1:end], line[end + 1:].lstrip()[1:]
        else:
            name, colon, rest = line.partition(":")
            if not colon or not name.strip() or any(c.isspace() for c in name.strip()):
                raise TableConfigError("%s:%d: need name:value pair" % (source, lineno))
        name, value = name.strip().lower(), _collapse_space(rest.strip())
        if not value:
            raise TableConfigError("%s:%d: alias %s has no value" % (source, lineno, name))
        if name in entries:
            if warn:
                warn('%s:%d: duplicate entry: "%s" (the first one is used)' % (source, lineno, name))
            continue
        entries[name] = value
    return entries


def write_index(path, entries):
    """Write ``entries`` ({str: str}) as an index file at ``path``, atomically.

    The data is written to a temporary file in the same directory, fsynced,
    and renamed over ``path``; the directory is fsynced too.
    """
    items = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in entries.items())
    nslots = 8
    while nslots < 2 * len(items):
        nslots *= 2
    mask = nslots - 1
    slots = [0] * nslots
    records = []
    offset = _HEADER.size + _OFFSET.size * nslots
    for key, value in items:
        slot = zlib.crc32(key) & mask
        while slots[slot]:
            slot = (slot + 1) & mask
        slots[slot] = offset
        records.append(_RECORD.pack(len(key), len(value)) + key + value)
        offset += _RECORD.size + len(key) + len(value)
    header = _HEADER.pack(MAGIC, len(items), nslots) + struct.pack("<%dQ" % nslots, *slots)
    replace_file(path, header + b"".join(records))


class IndexFile:
    """A read-only, memory-mapped index written by :func:`write_index`.

    Raises (at construction):
        OSError: the file cannot be opened.
        TableConfigError: the file is not an index.
    """

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < _HEADER.size:
                raise TableConfigError("%s: not a mailstack table index (too short)" % path)
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        magic, self.count, nslots = _HEADER.unpack_from(self._map, 0)
        end = _HEADER.size + nslots * _OFFSET.size
        if magic != MAGIC or nslots & (nslots - 1) or end > size:
            self._map.close()
            raise TableConfigError("%s: not a mailstack table index (rebuild it with postmap)" % path)
        self._mask = nslots - 1
        self._records = end
        self._slots = memoryview(self._map)[_HEADER.size:end].cast("Q")

    def get(self, key):
        """Return the value (str) for ``key`` (str), or None."""
        raw = key.encode("utf-8")
        data, slots, mask = self._map, self._slots, self._mask
        slot = zlib.crc32(raw) & mask
        while True:
            offset = slots[slot]
            if not offset:
                return None
            klen, vlen = _RECORD.unpack_from(data, offset)
            start = offset + _RECORD.size
            if klen == len(raw) and data[start:start + klen] == raw:
                return data[start + klen:start + klen + vlen].decode("utf-8")
            slot = (slot + 1) & mask

    def items(self):
        """Yield every ``(key, value)`` in key order."""
        offset = self._records
        for _ in range(self.count):
            klen, vlen = _RECORD.unpack_from(self._map, offset)
            start = offset + _RECORD.size
            yield (self._map[start:start + klen].decode("utf-8"),
                   self._map[start + klen:start + klen + vlen].decode("utf-8"))
            offset = start + klen + vlen

    def close(self):
        self._slots.release()
        self._map.close()


def read_index(path):
    """Return ``{key: value}`` of an index file (for ``postmap -s`` and ``-d``)."""
    index = IndexFile(path)
    try:
        return dict(index.items())
    finally:
        index.close()


class HashTable(FileTable):
    """``hash:/path/name``: the index ``/path/name.db`` built by postmap."""

    type_name = "hash"

    @property
    def db_path(self):
        return self.path + ".db"

    @property
    def _watched_path(self):
        return self.db_path

    def _missing_hint(self):
        return " (build it with 'mailstack postmap %s')" % self.path

    def _load(self, path):
        index = IndexFile(self.db_path)
        try:
            if os.stat(path).st_mtime > os.stat(self.db_path).st_mtime:
                log.warn("database {db} is older than source file {source}", db=self.db_path, source=path)
        except OSError:
            pass
        return index

    def _replace(self, data):
        old, self._data = self._data, data
        if old is not None:
            old.close()

    def _get(self, key):
        return self._data.get(key)

    def items(self):
        """Return every ``(key, value)`` of the index, for ``postmap -s``."""
        self._check()
        if self._error is not None:
            raise TableConfigError(self._error)
        return list(self._data.items())

    def close(self):
        if self._data is not None:
            self._data.close()
            self._data = None


class TextHashTable(FileTable):
    """``texthash:/path/name``: the postmap source read into memory, re-read on change."""

    type_name = "texthash"

    def _load(self, path):
        return parse_source(self._source_text(), self.source,
                            warn=lambda text: log.warn("{text}", text=text))

    def _get(self, key):
        return self._data.get(key)

    def items(self):
        """Return every ``(key, value)`` in key order, for ``postmap -s``."""
        self._check()
        if self._error is not None:
            raise TableConfigError(self._error)
        return sorted(self._data.items())
