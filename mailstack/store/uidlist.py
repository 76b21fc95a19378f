# -*- test-case-name: tests.store.test_uidlist -*-
"""Persistent IMAP UIDs in Dovecot's ``dovecot-uidlist`` (version 3).

Format, as Dovecot 2.3 writes it::

    3 V1795424284 N3 Gd0df820e1c00046bed3c000083ecc375
    1 :1795424284.M246834P15597.vm,S=11,W=12
    2 W2048 :1795424284.M249286P15597.vm,S=11

The header holds the version, UIDVALIDITY (``V``), the next UID (``N``) and
the folder GUID (``G``); unknown header fields are kept.  Each record is a
UID, optional extension fields (``W`` virtual size, ``P`` POP3 UIDL, ``O``
POP3 order, ``G`` GUID, kept as they are) and ``:`` plus the message's base
name.  Records are in ascending UID order.  The next UID is the larger of
``N`` and the last record's UID plus one, because appended records do not
update the header.

Design note (races and invariants), after Dovecot's ``maildir-uidlist.c``:

* Only the holder of the dot-lock ``dovecot-uidlist.lock`` hands out UIDs.
  Under the lock the file is re-read first, so a UID given by another
  process is never given again, and ``N`` never goes backwards.
* New records are *appended* with one ``write()`` on an ``O_APPEND``
  descriptor, then fsynced; the lock is released after.  Readers take no
  lock: they re-read the file when its inode or size changes, read only
  what was appended when the inode is the same, and ignore a last line
  without its newline (a writer in the middle of its write).
* Dropping records (expunges) rewrites the whole file into the lock file
  and renames it over the list: readers see the old or the new list, never
  a mix, and the rename releases the lock.
* A base name is the key: renaming a message between ``new/`` and ``cur/``
  or changing its flags never changes its UID.

All methods that touch the file block; call them from a thread.
"""

import os
import re
import secrets
from mailstack.store import dotlock

FILENAME = "dovecot-uidlist"
VERSION = 3
# "<uid> [<ext> ...] :<base>[:2,<info>]"; broken lines do not match and are skipped, as in Dovecot.
_RECORD = re.compile(r"^(\d+) (?:([^\n]*?) )?:([^\n:]+)[^\n]*$", re.M)
# Three times faster, but wrong when an extension value holds a ":" (then the
# extension group does not end with the separating space): see _records().
_RECORD_FAST = re.compile(r"^(\d+) ([^:\n]*):([^:\n]+)", re.M)


class UidListError(Exception):
    """The uidlist file is corrupt beyond what can be ignored."""


class UidList:
    """The UID list of one folder, as last read from disk.

    Attributes:
        path: the ``dovecot-uidlist`` file.
        uidvalidity: the folder's UIDVALIDITY (0 until the file exists).
        next_uid: the next UID to hand out.
        guid: the folder GUID (32 hex digits).
        by_base: base name -> UID.
        by_uid: UID -> base name.
        ext: UID -> extension fields (only records that have some).
    """

    def __init__(self, folder_path, fsync=True, lock_timeout=300.0, stale_timeout=120.0):
        self.path = os.path.join(folder_path, FILENAME)
        self._fsync = fsync
        self._lock_timeout = lock_timeout
        self._stale_timeout = stale_timeout
        self.uidvalidity = 0
        self.next_uid = 1
        self.guid = ""
        self._header_ext = ""
        self.by_base = {}
        self.by_uid = {}
        self.ext = {}
        self.appended = []
        self._inode = None
        self._offset = 0
        self._last_uid = 0

    # -- reading -------------------------------------------------------

    def refresh(self):
        """Bring the in-memory list up to date with the file.

        Returns:
            None when nothing changed; ``"append"`` when records were
            appended (their UIDs are in :attr:`appended`); ``"full"`` when
            the file was replaced, created or removed and re-read whole.
        """
        self.appended = []
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            changed = self._inode is not None
            self._reset()
            return "full" if changed else None
        try:
            st = os.fstat(fd)
            if st.st_ino == self._inode and st.st_size == self._offset:
                return None
            if st.st_ino == self._inode and st.st_size > self._offset:
                os.lseek(fd, self._offset, os.SEEK_SET)
                data = _read_all(fd)
                before = self._last_uid
                self._parse(data, header=False)
                appended = []
                for uid in reversed(self.by_uid):
                    if uid <= before:
                        break
                    appended.append(uid)
                self.appended = appended[::-1]
                return "append"
            data = _read_all(fd)
        finally:
            os.close(fd)
        self._reset()
        self._inode = st.st_ino
        self._parse(data, header=True)
        return "full"

    def _reset(self):
        self.uidvalidity, self.next_uid, self.guid, self._header_ext = 0, 1, "", ""
        self.by_base, self.by_uid, self.ext = {}, {}, {}
        self._inode, self._offset, self._last_uid = None, 0, 0

    def _parse(self, data, header):
        end = data.rfind(b"\n") + 1
        self._offset += end
        text = data[:end].decode("utf-8", "surrogateescape")
        version = VERSION
        if header:
            if not text:
                self._offset = 0
                return
            first, _, text = text.partition("\n")
            version = self._parse_header(first)
        by_base, by_uid, exts, last = self.by_base, self.by_uid, self.ext, self._last_uid
        if version == 1:
            records = (_parse_v1(line) for line in text.split("\n") if line)
        else:
            records = _records(text)
            if not by_uid and records and self._load_whole(records):
                return
        for uid, ext, base in records:
            uid = int(uid)
            if uid <= last:
                continue  # Dovecot also skips out-of-order lines
            if base in by_base:
                old = by_base[base]
                del by_uid[old]
                exts.pop(old, None)
            by_base[base] = uid
            by_uid[uid] = base
            if ext:
                exts[uid] = ext
            last = uid
        self._last_uid = last
        self.next_uid = max(self.next_uid, last + 1)

    def _load_whole(self, records):
        """Load a whole, well-formed list with C-level dict building; False when it is not well-formed.

        Well-formed means strictly ascending UIDs and no base twice, which is
        what Dovecot and mailstack write; anything else takes the careful
        record-by-record path.
        """
        uids = list(map(int, [r[0] for r in records]))
        bases = [r[2] for r in records]
        if uids[0] < 1 or uids != sorted(set(uids)):
            return False
        by_base = dict(zip(bases, uids))
        if len(by_base) != len(bases):
            return False
        self.by_base, self.by_uid = by_base, dict(zip(uids, bases))
        if any(r[1] for r in records):
            self.ext = {uid: r[1] for uid, r in zip(uids, records) if r[1]}
        self._last_uid = uids[-1]
        self.next_uid = max(self.next_uid, uids[-1] + 1)
        return True

    def _parse_header(self, line):
        fields = line.split()
        if not fields or not fields[0].isdigit():
            raise UidListError("%s: bad header %r" % (self.path, line))
        version = int(fields[0])
        if version == 1 and len(fields) >= 3:
            self.uidvalidity, self.next_uid = int(fields[1]), int(fields[2])
            return 1
        if version != 3:
            raise UidListError("%s: unsupported version %d" % (self.path, version))
        extra = []
        for field in fields[1:]:
            key, value = field[:1], field[1:]
            if key == "V" and value.isdigit():
                self.uidvalidity = int(value)
            elif key == "N" and value.isdigit():
                self.next_uid = int(value)
            elif key == "G":
                self.guid = value
            else:
                extra.append(field)
        self._header_ext = " ".join(extra)
        return 3

    # -- writing (dot-lock held) ---------------------------------------

    def lock(self):
        """Take the uidlist dot-lock and refresh; return the :class:`~.dotlock.DotLock`.  Blocks."""
        held = dotlock.acquire(self.path, timeout=self._lock_timeout, stale_timeout=self._stale_timeout)
        try:
            self.refresh()
        except BaseException:
            held.release()
            raise
        return held

    def assign(self, lock, bases, uidvalidity_factory):
        """Give UIDs to the ``bases`` that have none, in the order given; return ``[(uid, base)]``.

        Must be called with ``lock`` (from :meth:`lock`) held; the lock stays held.

        Args:
            lock: the held dot-lock.
            bases: base names of messages found in the folder.
            uidvalidity_factory: called for a UIDVALIDITY when the list does not exist yet.
        """
        new = []
        for base in bases:
            if base in self.by_base:
                continue
            uid = self.next_uid
            self.next_uid += 1
            self.by_base[base] = uid
            self.by_uid[uid] = base
            self._last_uid = uid
            new.append((uid, base))
        if self._inode is None:
            if not self.uidvalidity:
                self.uidvalidity = uidvalidity_factory()
                self.guid = secrets.token_hex(16)
            self._write_all(lock)
            return new
        if new:
            text = "".join(self._format(uid) for uid, _base in new).encode("utf-8", "surrogateescape")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                view = memoryview(text)
                while view:
                    view = view[os.write(fd, view):]
                if self._fsync:
                    os.fsync(fd)
                self._offset = os.fstat(fd).st_size
            finally:
                os.close(fd)
        return new

    def drop(self, lock, uids):
        """Remove the records of ``uids`` and rewrite the file, releasing ``lock``."""
        for uid in uids:
            base = self.by_uid.pop(uid, None)
            if base is not None:
                self.by_base.pop(base, None)
                self.ext.pop(uid, None)
        self._write_all(lock)

    def rewrite(self, lock):
        """Rewrite the whole file from memory (after changing :attr:`ext`), releasing ``lock``."""
        self._write_all(lock)

    def _format(self, uid):
        ext = self.ext.get(uid)
        if ext:
            return "%d %s :%s\n" % (uid, ext, self.by_uid[uid])
        return "%d :%s\n" % (uid, self.by_uid[uid])

    def _write_all(self, lock):
        header = "%d V%d N%d G%s" % (VERSION, self.uidvalidity, self.next_uid, self.guid)
        if self._header_ext:
            header += " " + self._header_ext
        parts = [header + "\n"]
        parts.extend(self._format(uid) for uid in sorted(self.by_uid))
        data = "".join(parts).encode("utf-8", "surrogateescape")
        lock.replace(data, fsync=self._fsync)
        st = os.stat(self.path)
        self._inode, self._offset = st.st_ino, len(data)


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _records(text):
    """Return [(uid, ext, base)] of version 3 record lines."""
    records = _RECORD_FAST.findall(text)
    for _uid, ext, _base in records:
        if ext and ext[-1] != " ":
            return _RECORD.findall(text)
    return [(uid, ext.rstrip(), base) if ext else (uid, ext, base) for uid, ext, base in records] \
        if any(ext for _u, ext, _b in records) else records


def _parse_v1(line):
    uid, _, rest = line.partition(" ")
    if not uid.isdigit() or not rest:
        return "0", "", ""
    return uid, "", rest.partition(":")[0]
