# -*- test-case-name: tests.store.test_folder -*-
"""Folder synchronisation: the view of a maildir folder kept in step with the disk.

:class:`FolderSync` is the part of :class:`~mailstack.store.folder.Folder`
that reads ``new/``, ``cur/`` and ``dovecot-uidlist``, numbers new files and
works out what changed (:class:`Changes`); the folder adds the public API,
the operations and the listeners.

Design note (races and invariants), after Dovecot's ``maildir-sync.c``:

* The message key is the base name; the UID comes from ``dovecot-uidlist``
  (:mod:`.uidlist`).  A sync decides which directories changed before
  reading either, and reads ``new/`` *before* ``cur/``: a message moved
  from new/ to cur/ during the scan is then seen at least once.
* A directory is re-read only when its mtime differs from the one recorded
  at its last read; that mtime is recorded only when it did not change
  during the read and is older than two seconds (timestamp granularity:
  a change in the same tick would keep the mtime).
* A rename inside ``cur/`` (a flag change by another process) may hide a
  file from one ``readdir()``.  A message missing from the incremental read
  is declared expunged only when it is also missing from a full read during
  which neither directory changed; otherwise it is looked at again next time.
* UIDs for new files are assigned under the uidlist dot-lock, after
  re-reading the list, in file-name (delivery time) order.  Files that
  vanished in between are not given a UID.
* The view (``uid -> Message`` and its sorted list) is replaced whole,
  never changed in place, so the reactor thread reads it without a lock
  while a sync runs in a worker thread.

Everything here blocks and runs under the folder's lock.
"""

import contextlib
import gc
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

from twisted.logger import Logger

from mailstack.store import maildir, uidlist
from mailstack.store.errors import FolderNotFound
from mailstack.store.keywords import Keywords

log = Logger(namespace="mailstack.store")

TMP_CLEAN_INTERVAL = 8 * 3600  # as Dovecot's maildir tmp/ scan
_MTIME_SETTLE_NS = 2_000_000_000
_SIZES = re.compile(r",S=(\d+)(?:,W=(\d+))?")


class Message(NamedTuple):
    """A message as the folder last saw it (immutable).

    Attributes:
        uid: its IMAP UID.
        base: its base name (the key that never changes).
        subdir: ``"new"`` or ``"cur"``.
        name: its current file name.
        size: its size in bytes as stored (LF line ends).
        vsize: its size with CRLF line ends (RFC822.SIZE, POP3 octets).
        flags: IMAP system flags and keyword names (never ``\\Recent``).
    """

    uid: int
    base: str
    subdir: str
    name: str
    size: int
    vsize: int
    flags: frozenset

    def __repr__(self):
        return "<Message uid=%d %s/%s>" % (self.uid, self.subdir, self.name)

    @property
    def relpath(self):
        """``new/NAME`` or ``cur/NAME``."""
        return self.subdir + "/" + self.name


class Status(NamedTuple):
    """Counts of a folder as of its last sync.

    Attributes:
        messages: how many messages.
        unseen: how many without ``\\Seen``.
        size: total bytes on disk (LF line ends).
        vsize: total bytes with CRLF line ends (POP3 STAT octets).
        uidnext: the next UID.
        uidvalidity: the UIDVALIDITY.
    """

    messages: int
    unseen: int
    size: int
    vsize: int
    uidnext: int
    uidvalidity: int


@dataclass(frozen=True)
class Changes:
    """What a sync or an operation changed.

    Attributes:
        added: new :class:`Message` objects, ascending UIDs.
        expunged: UIDs of messages that are gone.
        flagged: messages whose flags changed (their new state).
    """

    added: tuple = ()
    expunged: tuple = ()
    flagged: tuple = ()

    def __bool__(self):
        return bool(self.added or self.expunged or self.flagged)

class FolderSync:
    """The synchronisation state and machinery of one folder (see the module notes).

    Attributes:
        name: the IMAP name (``INBOX``, ``Sent``, ``Archive.2024``).
        path: the maildir directory.
        keywords: the folder's :class:`~mailstack.store.keywords.Keywords`.
    """

    def __init__(self, name, path, fsync=True, uidvalidity_factory=None):
        self.name = name
        self.path = path
        self._fsync = fsync
        self._uidvalidity_factory = uidvalidity_factory or (lambda: int(time.time()))
        self._uidlist = uidlist.UidList(path, fsync=fsync)
        self.keywords = Keywords(path, fsync=fsync)
        self._lock = threading.RLock()
        self._dirs = {"new": {}, "cur": {}}      # base -> file name, as last read
        self._stamps = {"new": None, "cur": None}  # trusted mtimes of those reads
        self._view_base = {}    # base -> uid of the messages in the view
        self._pending = set()   # bases to look at again on the next sync
        self._size_updates = {}  # uid -> (size, vsize) computed by reading files
        # (uid -> Message, ascending list or None): replaced whole, never
        # changed in place, so the reactor thread can read it without a lock.
        self._snapshot = ({}, [])
        self._info_cache = {}   # info letters -> flags
        self._synced = False
        self._tmp_cleaned = 0.0

    @property
    def _by_uid(self):
        return self._snapshot[0]

    def _publish(self, view):
        self._snapshot = (view, None)

    def _listdir(self, sub):
        """Read one directory; return (base -> name, trusted mtime stamp or None)."""
        path = os.path.join(self.path, sub)
        try:
            before = os.stat(path).st_mtime_ns
            names = os.listdir(path)
            after = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            raise FolderNotFound("folder %s does not exist" % self.name) from None
        files = {}
        for name in names:
            if name[0] != ".":
                files[name.partition(":")[0]] = name
        # An mtime is only a safe stamp once it is older than the file
        # system's timestamp granularity (Dovecot waits too): a change in the
        # same tick as the scan would otherwise keep the old mtime.
        trusted = before == after and time.time_ns() - after > _MTIME_SETTLE_NS
        return files, (after if trusted else None), before == after

    def _changed_dirs(self, force):
        """Return the directories to re-read, deciding for both before reading either."""
        todo = []
        for sub in ("new", "cur"):
            stamp = self._stamps[sub]
            if force or stamp is None:
                todo.append(sub)
                continue
            try:
                mtime = os.stat(os.path.join(self.path, sub)).st_mtime_ns
            except FileNotFoundError:
                raise FolderNotFound("folder %s does not exist" % self.name) from None
            if mtime != stamp:
                todo.append(sub)
        return todo

    def _rescan(self, force=False):
        """Re-read changed directories, new/ before cur/; return (changed bases, consistent)."""
        changed = set()
        consistent = True
        for sub in self._changed_dirs(force):
            files, stamp, stable = self._listdir(sub)
            old = self._dirs[sub]
            if old:
                changed.update(base for base, _name in old.items() ^ files.items())
            else:
                changed.update(files)
            self._dirs[sub] = files
            self._stamps[sub] = stamp
            consistent = consistent and stable
        return changed, consistent

    def _where(self, base):
        """Return ("cur"|"new", name) for ``base`` as last scanned, or None."""
        name = self._dirs["cur"].get(base)
        if name is not None:
            return "cur", name
        name = self._dirs["new"].get(base)
        if name is not None:
            return "new", name
        return None

    def _sync(self):
        now = time.time()
        if now - self._tmp_cleaned > TMP_CLEAN_INTERVAL:
            self._tmp_cleaned = now
            maildir.clean_tmp(self.path, now)
        ul = self._uidlist
        old_validity = ul.uidvalidity
        changed, consistent = self._rescan(force=not self._synced)
        how = ul.refresh()
        if how == "full" and self._synced:
            # Rewritten by someone (expunges, or recreated): look at everything.
            changed.update(self._dirs["new"], self._dirs["cur"], self._view_base)
        elif how == "append":
            changed.update(ul.by_uid[uid] for uid in ul.appended if uid in ul.by_uid)
        changed.update(self._pending)
        self._pending = set()
        if not changed and ul.uidvalidity:
            self._synced = True
            return Changes()
        cur, new, by_base, view_base = self._dirs["cur"], self._dirs["new"], ul.by_base, self._view_base
        unknown = [b for b in changed if b not in by_base and (b in cur or b in new)]
        if unknown or not ul.uidvalidity:
            self._assign(unknown)
        gone = {b for b in changed if b not in cur and b not in new and (b in by_base or b in view_base)}
        if gone:
            # Missing from one scan is not enough (a rename in cur/ may have
            # hidden it): confirm with a full scan during which nothing moved.
            more, stable = self._rescan(force=True)
            more2, stable2 = self._rescan(force=True) if not stable else (set(), True)
            extra = (more | more2) - changed
            changed |= extra
            new_unknown = [b for b in extra if b not in ul.by_base and self._where(b) is not None]
            if new_unknown:
                self._assign(new_unknown)
            gone = {b for b in gone if self._where(b) is None}
            if gone and not (stable or stable2):
                self._pending.update(gone)
                gone = set()
            dropped = [ul.by_base[b] for b in gone if b in ul.by_base]
            if dropped:
                self._drop(dropped)
        changes = self._update_view(changed, gone)
        if old_validity and ul.uidvalidity != old_validity:
            log.warn("{path}: UIDVALIDITY changed from {old} to {new} (uidlist recreated)",
                     path=self.path, old=old_validity, new=ul.uidvalidity)
        return changes

    def _update_view(self, candidates, gone):
        """Apply the new state of ``candidates`` (bases) to the view; return :class:`Changes`."""
        if not self._by_uid and not self._view_base:
            return self._first_view()
        view, view_base, by_base = dict(self._by_uid), self._view_base, self._uidlist.by_base
        added, expunged, flagged = [], [], []
        moved = False  # a message whose file name changed without a flag change
        # Removals first: after a renumbering a UID may pass from one base to another.
        for base in candidates & view_base.keys() if view_base else ():
            old_uid = view_base[base]
            where = self._where(base)
            if where is None and base not in gone:
                self._pending.add(base)  # not confirmed yet: keep it
                continue
            if where is None or by_base.get(base) != old_uid:
                del view_base[base]
                if view.get(old_uid) is not None and view[old_uid].base == base:
                    del view[old_uid]
                    expunged.append(old_uid)
        info_cache, sizes = self._info_cache, _SIZES.search
        cur, new = self._dirs["cur"], self._dirs["new"]
        for base in candidates:
            subdir, name = "cur", cur.get(base)
            if name is None:
                subdir, name = "new", new.get(base)
                if name is None:
                    continue
            uid = by_base.get(base)
            if uid is None:
                self._pending.add(base)  # not numbered (lock trouble): try again next sync
                continue
            previous = view.get(uid)
            if previous is not None and previous.name == name and previous.subdir == subdir:
                continue
            match = sizes(base)
            if match is not None and match.group(2):
                # The common case, inlined: it runs 100,000 times when a big folder opens.
                info = name[len(base) + 3:]
                flags = info_cache.get(info)
                if flags is None:
                    flags = self._flags_for(info)
                message = Message(uid, base, subdir, name, int(match.group(1)), int(match.group(2)), flags)
            else:
                message = self._message(uid, base, subdir, name)
            view[uid] = message
            view_base[base] = uid
            if previous is None:
                added.append(message)
            elif previous.flags != message.flags:
                flagged.append(message)
            else:
                moved = True  # new/ -> cur/ by another program: new path, same flags
        if added or expunged or flagged or moved:
            self._publish(view)
        self._synced = True
        added.sort()
        flagged.sort()
        expunged.sort()
        return Changes(tuple(added), tuple(expunged), tuple(flagged))

    def _first_view(self):
        """Build the view of a folder opened for the first time; every message is "added".

        The same as :meth:`_update_view` with an empty view, written as a
        tight loop because it runs once per message of a big folder.
        """
        by_base, info_cache, sizes = self._uidlist.by_base, self._info_cache, _SIZES.search
        view, view_base, pending = {}, {}, self._pending
        new_tuple = tuple.__new__
        for subdir in ("new", "cur"):  # cur/ last: it wins for a base seen in both
            for base, name in self._dirs[subdir].items():
                uid = by_base.get(base)
                if uid is None:
                    pending.add(base)
                    continue
                match = sizes(base)
                if match is not None and match.group(2):
                    info = name[len(base) + 3:]
                    flags = info_cache.get(info)
                    if flags is None:
                        flags = self._flags_for(info)
                    view[uid] = new_tuple(Message, (uid, base, subdir, name, int(match.group(1)),
                                                    int(match.group(2)), flags))
                else:
                    view[uid] = self._message(uid, base, subdir, name)
                view_base[base] = uid
        self._view_base = view_base
        ordered = [view[uid] for uid in sorted(view)]
        self._snapshot = (view, ordered)
        self._synced = True
        return Changes(tuple(ordered), (), ())

    def _assign(self, unknown):
        lock = self._uidlist.lock()
        try:
            ul = self._uidlist
            todo = []
            for base in unknown:
                if base in ul.by_base:
                    continue
                where = self._where(base)
                if where is not None and os.path.exists(os.path.join(self.path, where[0], where[1])):
                    todo.append(base)
            todo.sort(key=_delivery_order)
            ul.assign(lock, todo, self._uidvalidity_factory)
        finally:
            lock.release()

    def _drop(self, uids):
        lock = self._uidlist.lock()
        try:
            present = [uid for uid in uids if uid in self._uidlist.by_uid]
            if present:  # another process may have dropped them already
                self._uidlist.drop(lock, present)
        finally:
            lock.release()

    def _flags_for(self, info):
        flags = self._info_cache.get(info)
        if flags is None:
            system, letters, _other = maildir.split_info(info)
            names = self.keywords.names_for(letters)
            flags = system | frozenset(names)
            # A letter without a name yet is not cached: its name may come later.
            if len(names) == len(letters) and len(self._info_cache) < 4096:
                self._info_cache[info] = flags
        return flags

    def _message(self, uid, base, subdir, name):
        """Build a Message for a file whose name lacks ``,S=`` or ``,W=``.

        Sizes come from the uidlist's ``S``/``W`` extension fields (Dovecot
        records them there for such files), else from ``stat()`` and one
        read of the file to count its lines; what had to be computed is
        written back to the uidlist at the end of the sync, so it is computed
        once per message, not once per process.
        """
        info = name[len(base) + 3:] if len(name) > len(base) else ""
        parsed = maildir.parse(base)
        size, vsize = parsed.size, parsed.vsize
        ext = self._uidlist.ext.get(uid, "")
        for field in ext.split():
            if field[1:].isdigit():
                if field[0] == "S" and size is None:
                    size = int(field[1:])
                elif field[0] == "W" and vsize is None:
                    vsize = int(field[1:])
        if size is None or vsize is None:
            path = os.path.join(self.path, subdir, name)
            try:
                if vsize is None:
                    with open(path, "rb") as handle:
                        data = handle.read()
                    size = len(data) if size is None else size
                    vsize = maildir.virtual_size(data)
                else:
                    size = os.stat(path).st_size
                self._size_updates[uid] = (size, vsize)
            except FileNotFoundError:
                size = size or 0
                vsize = vsize if vsize is not None else size
        return Message(uid, base, subdir, name, size, vsize, self._flags_for(info))

    def _save_sizes(self):
        """Record computed sizes as ``S``/``W`` uidlist extension fields (as Dovecot does)."""
        updates, self._size_updates = self._size_updates, {}
        ul = self._uidlist
        lock = ul.lock()
        try:
            changed = False
            for uid, (size, vsize) in updates.items():
                if uid not in ul.by_uid:
                    continue
                fields = [f for f in ul.ext.get(uid, "").split() if f[:1] not in ("S", "W")]
                fields += ["S%d" % size, "W%d" % vsize]
                ul.ext[uid] = " ".join(fields)
                changed = True
            if changed:
                ul.rewrite(lock)
        finally:
            lock.release()

    def _ensure_synced(self):
        """Sync once if never synced; the subclass provides ``_announce`` for listeners."""
        if not self._synced:
            self._announce(self._sync())


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while a big folder is first read.

    Building 100,000 message tuples triggers many collections that each
    walk every object of a long-running server; none of what is built
    here is cyclic garbage.  This halved the open time of a 100,000-message
    folder in a process that already held a few such folders.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _delivery_order(base):
    head, _, _rest = base.partition(".")
    return (int(head) if head.isdigit() else 0, base)
