# -*- test-case-name: tests.store.test_folder -*-
"""One maildir folder: messages with UIDs and flags, kept in sync with the disk.

A :class:`Folder` is shared by everyone in the process who opened that
directory (the :class:`~mailstack.store.store.MailStore` hands out one
object per path), so that POP3, IMAP sessions and local delivery see one
view and one set of listeners.  Synchronisation with the disk (and its
design note on races) is in :mod:`.sync`.

Design note (races and invariants) for the operations here:

* Flag changes rename ``cur/BASE:2,OLD`` to ``cur/BASE:2,NEW``; when the
  source is gone (someone else renamed it) the folder is re-synced and the
  rename retried once; a message that is gone is expunged.
* New messages (APPEND, COPY) are written safely first, then numbered under
  the uidlist lock at once, so that APPENDUID/COPYUID can be answered.
* Listeners are told about changes in the reactor thread (through
  ``callFromThread``), after the folder's view has changed.

Every method that touches the disk blocks (readdir, rename, fsync, lock
waits): call them through :meth:`MailStore.run` or ``deferToThread``.  The
view accessors (:meth:`messages`, :meth:`get`, :meth:`status`,
``uidvalidity``, ``uidnext``) only read memory and take no lock.
"""

import os
import threading

from twisted.logger import Logger

from mailstack.store import dotlock, maildir
from mailstack.store.errors import FolderNotFound
from mailstack.store.sync import Changes, FolderSync, Message, Status, _gc_paused

__all__ = ["Changes", "Folder", "Message", "Status"]

log = Logger(namespace="mailstack.store")

RECENT_FILE = "mailstack-recent"


class Folder(FolderSync):
    """A maildir folder.

    Attributes:
        name: the IMAP name (``INBOX``, ``Sent``, ``Archive.2024``).
        path: the maildir directory.
        mailbox: the :class:`~mailstack.store.mailbox.Mailbox` it belongs to (may be None).
        keywords: the folder's :class:`~mailstack.store.keywords.Keywords`.
        watch: the :class:`~mailstack.store.notify.FolderWatch` (None without a reactor).
    """

    def __init__(self, name, path, mailbox=None, reactor=None, fsync=True, hostname=None,
                 uidvalidity_factory=None):
        super().__init__(name, path, fsync=fsync, uidvalidity_factory=uidvalidity_factory)
        self.mailbox = mailbox
        self._reactor = reactor
        self._hostname = hostname
        self._listeners = []
        self._claiming = None    # thread id inside claim_recent's own first sync
        self.watch = None       # set by the store when change notification runs

    # -- view ------------------------------------------------------------

    @property
    def uidvalidity(self):
        """The folder's UIDVALIDITY (after the first sync)."""
        return self._uidlist.uidvalidity

    @property
    def uidnext(self):
        """The UID the next message will get (after the first sync)."""
        return self._uidlist.next_uid

    def messages(self):
        """Return the messages of the last sync in ascending UID order.  Memory only, lock-free.

        The list is shared: do not modify it.
        """
        snapshot = self._snapshot
        if snapshot[1] is None:
            view = snapshot[0]
            snapshot = (view, [view[uid] for uid in sorted(view)])
            if self._snapshot[0] is view:
                self._snapshot = snapshot
        return snapshot[1]

    def get(self, uid):
        """Return the :class:`Message` with ``uid``, or None.  Memory only, lock-free."""
        return self._snapshot[0].get(uid)

    def exists(self):
        """Return True when the folder's directory exists.  Blocks (one stat)."""
        return os.path.isdir(os.path.join(self.path, "cur"))

    def status(self):
        """Return a :class:`Status` of the last sync (IMAP STATUS, POP3 STAT).  Memory only."""
        messages = self.messages()
        return Status(len(messages), sum(1 for m in messages if "\\Seen" not in m.flags),
                      sum(m.size for m in messages), sum(m.vsize for m in messages),
                      self.uidnext, self.uidvalidity)

    # -- listeners ---------------------------------------------------------

    def add_listener(self, listener):
        """Register ``listener`` for changes; see :class:`~mailstack.store.notify.FolderListener`.

        Call from the reactor thread.  The first listener starts watching
        the directory for other processes' changes.
        """
        self._listeners.append(listener)
        if len(self._listeners) == 1 and self.watch is not None:
            self.watch.start()

    def remove_listener(self, listener):
        """Unregister ``listener``; the last one stops the watch."""
        try:
            self._listeners.remove(listener)
        except ValueError:
            return
        if not self._listeners and self.watch is not None:
            self.watch.stop()

    @property
    def listeners(self):
        """The registered listeners (a copy)."""
        return list(self._listeners)

    def _announce(self, changes):
        if not changes or not self._listeners:
            return
        recent = ()
        # RFC 3501 §2.3.2: a message that arrives while a session has the
        # folder selected read-write is \Recent for that session.  The claim
        # is made here, in the thread that found the message, so that the
        # session learns the UIDs together with the messages.
        if changes.added and self._claiming != threading.get_ident() and any(
                getattr(listener, "claims_recent", False) for listener in self._listeners):
            recent = self.claim_recent()
        if self._reactor is None:
            self._fire(changes, recent)
        else:
            self._reactor.callFromThread(self._fire, changes, recent)

    def _fire(self, changes, recent=()):
        if recent:
            # One session only gets them: the first read-write listener
            # still there (if it left meanwhile, the next one).
            for listener in self._listeners:
                if getattr(listener, "claims_recent", False):
                    try:
                        listener.recent_claimed(self, recent)
                    except Exception:
                        log.failure("listener {listener!r} failed on recent_claimed", listener=listener)
                    break
        for listener in list(self._listeners):
            for method, value in (("messages_added", changes.added),
                                  ("messages_expunged", changes.expunged),
                                  ("flags_changed", changes.flagged)):
                if not value:
                    continue
                try:
                    getattr(listener, method)(self, value)
                except Exception:
                    log.failure("listener {listener!r} failed on {method}", listener=listener, method=method)

    # -- sync ------------------------------------------------------------

    def sync(self):
        """Bring the view up to date with the disk; return :class:`Changes`.  Blocks.

        Gives UIDs to new files (under the uidlist lock), notices messages
        that were removed or re-flagged by anyone, and tells listeners.

        Raises:
            FolderNotFound: when the folder's directory does not exist.
        """
        with self._lock:
            if self._synced:
                changes = self._sync()
            else:
                with _gc_paused():
                    changes = self._sync()
            if self._size_updates:
                self._save_sizes()
            # Announced (and new arrivals claimed as \Recent) under the lock:
            # a concurrent sync that finds nothing new must not return before
            # the listeners have been told about what this one found.
            self._announce(changes)
        return changes

    # -- reading -----------------------------------------------------------

    def open_message(self, uid):
        """Open message ``uid`` for reading (binary file object).  Blocks.

        Follows a rename by another process.

        Raises:
            KeyError: when there is no such message (or it was expunged meanwhile).
        """
        with self._lock:
            self._ensure_synced()
            for attempt in range(2):
                message = self._by_uid.get(uid)
                if message is None:
                    raise KeyError(uid)
                try:
                    return open(os.path.join(self.path, message.subdir, message.name), "rb")
                except FileNotFoundError:
                    self._announce(self._sync())
            raise KeyError(uid)

    def read(self, uid):
        """Return the bytes of message ``uid`` (LF line ends).  Blocks.  Raises KeyError."""
        with self.open_message(uid) as handle:
            return handle.read()

    def internaldate(self, uid):
        """Return the internal date (file mtime, seconds) of ``uid``.  Blocks.  Raises KeyError."""
        with self.open_message(uid) as handle:
            return os.fstat(handle.fileno()).st_mtime

    # -- changing ------------------------------------------------------------

    def store_flags(self, uids, flags, mode="set"):
        """Change the flags of ``uids``; return the changed messages.  Blocks.

        Args:
            uids: UIDs to change; unknown ones are skipped.
            flags: IMAP flags (``\\Seen``...) and keyword names.
            mode: ``"set"`` (replace), ``"add"`` or ``"remove"``.

        Raises:
            KeywordLimitError: when a new keyword would be the 27th.
        """
        flags, system, words = _split_flags(flags)
        with self._lock:
            self._ensure_synced()
            letters = self.keywords.letters_for(words, create=mode != "remove")
            changed, renamed = [], []
            for uid in uids:
                before = self._by_uid.get(uid)
                message = self._rename_flags(uid, system, letters, mode)
                if message is not None:
                    renamed.append(message)
                    if before is None or message.flags != before.flags:
                        changed.append(message)
            if renamed:
                view = dict(self._by_uid)
                for message in renamed:
                    view[message.uid] = message
                self._publish(view)
        changes = Changes(flagged=tuple(changed))
        self._announce(changes)
        return changed

    def _rename_flags(self, uid, system, letters, mode):
        for attempt in range(2):
            message = self._by_uid.get(uid)
            if message is None:
                return None
            old_info = message.name[len(message.base) + 3:] if message.subdir == "cur" and \
                message.name.startswith(message.base + maildir.INFO_SEP) else ""
            old_system, old_letters, other = maildir.split_info(old_info)
            if mode == "add":
                new_system, new_letters = old_system | system, set(old_letters) | set(letters)
            elif mode == "remove":
                new_system, new_letters = old_system - system, set(old_letters) - set(letters)
            else:
                new_system, new_letters = system, set(letters)
            info = maildir.info_letters(new_system, "".join(new_letters) + other)
            new_name = message.base + maildir.INFO_SEP + info
            if new_name == message.name and message.subdir == "cur":
                return None
            src = os.path.join(self.path, message.subdir, message.name)
            dst = os.path.join(self.path, "cur", new_name)
            try:
                os.rename(src, dst)
            except FileNotFoundError:
                self._announce(self._sync())
                continue
            updated = Message(uid, message.base, "cur", new_name, message.size, message.vsize,
                              self._flags_for(info))
            self._dirs[message.subdir].pop(message.base, None)
            self._dirs["cur"][message.base] = new_name
            return updated
        return None

    def expunge(self, uids):
        """Remove the messages ``uids``; return the UIDs actually removed.  Blocks.

        The files are unlinked, the uidlist rewritten without them, and the
        mailbox quota (``maildirsize``) lowered.
        """
        removed, freed = [], 0
        with self._lock:
            self._ensure_synced()
            for uid in sorted(set(uids)):
                message = self._by_uid.get(uid)
                if message is None:
                    continue
                try:
                    os.unlink(os.path.join(self.path, message.subdir, message.name))
                except FileNotFoundError:
                    self._announce(self._sync())
                    message = self._by_uid.get(uid)
                    if message is None:
                        continue
                    try:
                        os.unlink(os.path.join(self.path, message.subdir, message.name))
                    except FileNotFoundError:
                        continue
                removed.append(uid)
                freed += message.size
                self._view_base.pop(message.base, None)
                self._dirs[message.subdir].pop(message.base, None)
            if removed:
                view = dict(self._by_uid)
                for uid in removed:
                    view.pop(uid, None)
                self._publish(view)
                self._drop(removed)
        if removed and self.mailbox is not None:
            self.mailbox.quota.update(-freed, -len(removed))
        changes = Changes(expunged=tuple(removed))
        self._announce(changes)
        return removed

    def append(self, data, flags=(), internaldate=None):
        """Store a new message with ``flags``; return its :class:`Message` with its UID.  Blocks.

        This is IMAP APPEND and the delivery path: the quota is checked,
        the file delivered safely (:func:`.maildir.deliver`), and its UID
        assigned at once so that APPENDUID can be answered.

        Raises:
            QuotaExceeded: when the message does not fit.
            KeywordLimitError: when a new keyword would be the 27th.
            FolderNotFound: when the folder does not exist.
        """
        flags, system, words = _split_flags(flags)
        if not self.exists():
            raise FolderNotFound("folder %s does not exist" % self.name)
        info = maildir.info_letters(system, self.keywords.letters_for(words)) if flags else None
        delivered = maildir.deliver(self.path, data, info=info, hostname=self._hostname, mtime=internaldate,
                                    fsync=self._fsync, before_commit=self._quota_check)
        return self._commit_new(delivered, info)

    def _quota_check(self, tmp_path):
        if self.mailbox is not None:
            self.mailbox.quota.reserve(os.stat(tmp_path).st_size, 1)

    def _commit_new(self, delivered, info):
        """Number a file just put into this folder and add it to the view; return its Message."""
        with self._lock:
            lock = self._uidlist.lock()
            try:
                self._uidlist.assign(lock, [delivered.base], self._uidvalidity_factory)
            finally:
                lock.release()
            uid = self._uidlist.by_base[delivered.base]
            subdir = "new" if info is None else "cur"
            message = self._message(uid, delivered.base, subdir, delivered.name)
            # A watch's sync may have numbered and announced it already.
            known = self._synced and uid not in self._by_uid
            if known:
                self._dirs[subdir][delivered.base] = delivered.name
                view = dict(self._by_uid)
                view[uid] = message
                self._publish(view)
                self._view_base[delivered.base] = uid
            if known:
                self._announce(Changes(added=(message,)))
        return message

    def copy_to(self, uids, target):
        """Copy ``uids`` with their flags into ``target`` (a Folder); return ``[(uid, new Message)]``.  Blocks.

        Messages are hard-linked (no data copied, internal date kept), or
        copied where links are impossible; each gets a new name and a UID in
        ``target`` at once (for COPYUID), and counts against the quota.

        Raises:
            QuotaExceeded: when a copy does not fit (earlier copies stay).
            FolderNotFound: when ``target`` does not exist.
        """
        if not target.exists():
            raise FolderNotFound("folder %s does not exist" % target.name)
        result = []
        for uid in sorted(set(uids)):
            for attempt in range(2):
                message = self._by_uid.get(uid)
                if message is None:
                    break
                system = frozenset(f for f in message.flags if f.startswith("\\"))
                words = [f for f in message.flags if not f.startswith("\\")]
                info = maildir.info_letters(system, target.keywords.letters_for(words)) if message.flags else None
                source = os.path.join(self.path, message.subdir, message.name)
                try:
                    delivered = maildir.link(source, target.path, message.size, message.vsize, info,
                                             self._hostname, self._fsync, target._quota_check)
                except FileNotFoundError:
                    self.sync()  # renamed or expunged by someone meanwhile
                    continue
                except OSError:
                    try:
                        with self.open_message(uid) as handle:
                            mtime = os.fstat(handle.fileno()).st_mtime
                            result.append((uid, target.append(handle, message.flags, internaldate=mtime)))
                    except KeyError:
                        pass
                    break
                result.append((uid, target._commit_new(delivered, info)))
                break
        return result

    def claim_recent(self):
        """Return the UIDs that are ``\\Recent`` for the caller, and clear them for everyone else.  Blocks.

        Dovecot keeps "the first recent UID" in its index; mailstack keeps it
        in the folder's ``mailstack-recent`` file (one decimal number), updated
        under its own dot-lock: the first session that claims a message sees
        it as recent, later ones do not (RFC 3501 §2.3.2).  Besides SELECT,
        the folder claims new arrivals itself when a listener has
        ``claims_recent`` set (a read-write selected session) and hands them
        to that listener's ``recent_claimed(folder, uids)``.
        """
        with self._lock:
            self._claiming = threading.get_ident()
            try:
                self._ensure_synced()
            finally:
                self._claiming = None
            path = os.path.join(self.path, RECENT_FILE)
            lock = dotlock.acquire(path)
            try:
                first = _first_recent(path)
                # Only what this view has seen is claimed: a message another
                # process numbered but we have not synced yet stays recent.
                seen = max(self._by_uid, default=0) + 1
                recent = {uid for uid in self._by_uid if uid >= first}
                if seen > first:
                    # Not fsynced: after a crash the worst is that messages
                    # are \Recent once more; arrivals claimed for IDLE
                    # sessions must not wait for a disk flush.
                    lock.replace(b"%d\n" % seen, fsync=False)
            finally:
                lock.release()
            return recent

    def peek_recent(self):
        """Return how many messages of the view nobody has claimed as ``\\Recent`` yet.  Blocks.

        This is STATUS (RECENT) for a folder the caller has not selected:
        nothing is claimed.  The ``mailstack-recent`` file is replaced
        atomically, so it is read without its lock.
        """
        with self._lock:
            self._ensure_synced()
            first = _first_recent(os.path.join(self.path, RECENT_FILE))
            return sum(1 for uid in self._by_uid if uid >= first)


def _first_recent(path):
    """Return the first UID nobody has claimed, from a ``mailstack-recent`` file (1 when absent)."""
    try:
        with open(path) as handle:
            return int(handle.read().strip() or "1")
    except (FileNotFoundError, ValueError):
        return 1


def _split_flags(flags):
    """Return (flags, system flags, keyword names); system flags case-insensitively, no \\Recent."""
    system, words = set(), []
    for flag in flags:
        if flag.startswith("\\"):
            canonical = maildir.CANONICAL_FLAGS.get(flag.lower())
            if canonical is not None:
                system.add(canonical)
        elif flag:
            words.append(flag)
    return frozenset(system) | frozenset(words), frozenset(system), words
