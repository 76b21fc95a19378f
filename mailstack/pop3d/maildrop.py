# -*- test-case-name: tests.pop3d.test_commands -*-
"""A POP3 session's view of INBOX, through the shared store.

:class:`MaildropOpener` turns a userdb entry into an opened
:class:`Maildrop`: the user's mailbox is created on first use, INBOX is
synced (new files get their persistent UIDs, in :mod:`mailstack.store`)
and a snapshot of its messages is taken.  Everything that touches the disk
runs in the reactor's thread pool through ``MailStore.run``.

The snapshot is what RFC 1939 asks for: message numbers 1..N in UID order,
with the sizes and UIDLs of login time.  Sizes are the messages' CRLF sizes
as the store knows them (the ``,W=`` field, or for a file put there by
another program, counted once by the store and kept in the uidlist, as
Dovecot does), so LIST always matches what RETR sends.  UIDLs come from
the persistent UIDs and UIDVALIDITY (``pop3_uidl_format``), so they survive
restarts and a move to or from Dovecot; they are formatted only when UIDL
is asked for.  The opener keeps the most recently used INBOXes in memory.

Reading a message opens its file by the path of the snapshot, in the
reactor thread (an open of a cached directory entry, as every mail server
does); when another program renamed it (a flag change), the store finds it
again, in a thread.

:meth:`Maildrop.commit` is the UPDATE state: it flags retrieved messages
``\\Seen`` and expunges the deleted ones through the store, which rewrites
the uidlist, lowers the quota and tells the IMAP sessions on INBOX.
"""

import collections
import operator
import os

from mailstack.pop3d.transfer import CHUNK

_VSIZE = operator.attrgetter("vsize")


def _read_and_close(handle):
    with handle:
        return handle.read()


class MessageGone(Exception):
    """The message was expunged by someone else after the session's snapshot."""


class Maildrop:
    """An opened INBOX snapshot.

    Messages are numbered from 0 here (POP3 message N is index N-1).  The
    snapshot keeps the store's own message objects; nothing is copied per
    message at login, and UIDLs are formatted only when asked for.

    Attributes:
        directory: the maildir (what the POP3 session lock protects).
        count: the number of messages.
        total_size: the sum of their sizes.
    """

    def __init__(self, store, folder, messages, sizes, uidl_format):
        self._store = store
        self._folder = folder
        self._messages = messages
        self._sizes = sizes
        self._uidl_format = uidl_format
        self._uidvalidity = folder.uidvalidity
        self.directory = folder.path
        self.count = len(messages)
        self.total_size = sum(sizes)

    def size(self, index):
        """Return the CRLF size of message ``index``."""
        return self._sizes[index]

    def uid(self, index):
        """Return the IMAP UID of message ``index``."""
        return self._messages[index].uid

    def uidl(self, index):
        """Return the UIDL of message ``index``."""
        message = self._messages[index]
        return self._uidl_format.format(message.uid, self._uidvalidity, guid=message.base, filename=message.base)

    def read_message(self, index):
        """Return the stored bytes of message ``index``, or a Deferred firing with them.

        The RETR path of small messages: four system calls, no file object.

        Raises (or fails with):
            MessageGone: when the message no longer exists.
        """
        message = self._messages[index]
        try:
            fd = os.open(os.path.join(self.directory, message.subdir, message.name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            opened = self.open_message(index)
            return opened.addCallback(_read_and_close)
        try:
            size = os.fstat(fd).st_size
            chunks = [os.read(fd, size + 1)]
            while len(chunks[-1]) > size:  # the file grew: read the rest
                chunks.append(os.read(fd, CHUNK))
                if not chunks[-1]:
                    break
            return b"".join(chunks) if len(chunks) > 1 else chunks[0]
        finally:
            os.close(fd)

    def open_message(self, index):
        """Return message ``index`` as a binary file, or a Deferred firing with one.

        Raises (or fails with):
            MessageGone: when the message no longer exists.
        """
        message = self._messages[index]
        try:
            return open(os.path.join(self.directory, message.subdir, message.name), "rb")
        except FileNotFoundError:
            pass
        deferred = self._store.run(self._folder.open_message, message.uid)

        def gone(failure):
            failure.trap(KeyError)
            raise MessageGone(message.uid)
        return deferred.addErrback(gone)

    def commit(self, deleted, seen):
        """Flag ``seen`` as ``\\Seen`` and expunge ``deleted`` (indexes); return a Deferred.

        The Deferred fires with the number of messages actually removed
        (a message expunged meanwhile by someone else is not counted).
        """
        deleted_uids = [self._messages[i].uid for i in deleted]
        seen_uids = [self._messages[i].uid for i in seen]
        return self._store.run(self._commit, deleted_uids, seen_uids)

    def _commit(self, deleted_uids, seen_uids):
        if seen_uids:
            self._folder.store_flags(seen_uids, ["\\Seen"], "add")
        if deleted_uids:
            return len(self._folder.expunge(deleted_uids))
        return 0

    def close(self):
        """Forget the snapshot (the shared folder stays with the store)."""
        self._messages = []
        self._sizes = []


class MaildropOpener:
    """Opens users' INBOX snapshots for POP3 sessions.

    The store keeps one folder object per directory only while someone
    uses it; the opener holds on to the last :data:`RECENT_FOLDERS` INBOXes
    so that a client polling every few minutes finds its folder in memory
    and a login costs a directory scan, not a re-read of the uidlist.

    Args:
        store: the process's :class:`~mailstack.store.store.MailStore`.
        uidl_format: a :class:`~mailstack.pop3d.uidl.UIDLFormat`.
    """

    RECENT_FOLDERS = 64

    def __init__(self, store, uidl_format):
        self.store = store
        self.uidl_format = uidl_format
        self._recent = collections.OrderedDict()

    async def open(self, info):
        """Return the :class:`Maildrop` of a userdb entry (:class:`~mailstack.auth.request.UserInfo`).

        Raises:
            StoreError: the mailbox cannot be used (bad location, missing directory).
            OSError: the disk said no.
        """
        rule = "*:bytes=%d" % info.quota_bytes if info.quota_bytes else None
        mailbox = self.store.mailbox(info.user, info.home, info.mail or None, rule)
        drop = await self.store.run(self._open, mailbox)
        self._remember(drop._folder)
        return drop

    def _remember(self, folder):
        recent = self._recent
        recent[folder.path] = folder
        recent.move_to_end(folder.path)
        while len(recent) > self.RECENT_FOLDERS:
            recent.popitem(last=False)

    def _open(self, mailbox):
        mailbox.ensure()
        folder = mailbox.folder("INBOX")
        folder.sync()
        messages = list(folder.messages())
        sizes = list(map(_VSIZE, messages))
        return Maildrop(self.store, folder, messages, sizes, self.uidl_format)
