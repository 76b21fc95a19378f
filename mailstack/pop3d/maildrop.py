# -*- test-case-name: tests.pop3d.test_commands -*-
"""A POP3 session's view of INBOX, through the shared store.

:class:`MaildropOpener` turns a userdb entry into an opened
:class:`Maildrop`: the user's mailbox is created on first use, INBOX is
synced (new files get their persistent UIDs, in :mod:`mailstack.store`)
and a snapshot of its messages is taken.  Everything that touches the disk
runs in the reactor's thread pool through ``MailStore.run``.

The snapshot is what RFC 1939 asks for: message numbers 1..N in UID order,
with the sizes and UIDLs of login time.  Sizes are the messages' CRLF sizes
(the ``,W=`` field).  For a file whose name has no ``,W=`` (a file put there
by another program), the size is counted from the file at login, so that
LIST always matches what RETR sends.  UIDLs come from the persistent UIDs
and UIDVALIDITY (``pop3_uidl_format``), so they survive restarts and a move
to or from Dovecot.

Reading a message opens its file by the path of the snapshot, in the
reactor thread (an open of a cached directory entry); when another program
renamed it (a flag change), the store finds it again, in a thread.

:meth:`Maildrop.commit` is the UPDATE state: it flags retrieved messages
``\\Seen`` and expunges the deleted ones through the store, which rewrites
the uidlist, lowers the quota and tells the IMAP sessions on INBOX.
"""

import os
from dataclasses import dataclass

from mailstack.pop3d.transfer import virtual_size


class MessageGone(Exception):
    """The message was expunged by someone else after the session's snapshot."""


@dataclass(frozen=True)
class DropMessage:
    """One message of a session's snapshot.

    Attributes:
        uid: its IMAP UID.
        size: its size with CRLF line ends (what LIST and STAT count).
        uidl: its UIDL string.
        relpath: its file, relative to the maildir, at login time.
    """

    uid: int
    size: int
    uidl: str
    relpath: str


class Maildrop:
    """An opened INBOX snapshot.

    Attributes:
        directory: the maildir (what the POP3 session lock protects).
        messages: the :class:`DropMessage` list; message number N is ``messages[N-1]``.
    """

    def __init__(self, store, folder, messages):
        self._store = store
        self._folder = folder
        self.directory = folder.path
        self.messages = messages

    def open_message(self, index):
        """Return message ``index`` (0-based) as a binary file, or a Deferred firing with one.

        Raises (or fails with):
            MessageGone: when the message no longer exists.
        """
        message = self.messages[index]
        try:
            return open(os.path.join(self.directory, message.relpath), "rb")
        except FileNotFoundError:
            pass
        deferred = self._store.run(self._folder.open_message, message.uid)

        def gone(failure):
            failure.trap(KeyError)
            raise MessageGone(message.uid)
        return deferred.addErrback(gone)

    def commit(self, deleted, seen):
        """Flag ``seen`` as ``\\Seen`` and expunge ``deleted`` (0-based indexes); return a Deferred.

        The Deferred fires with the number of messages actually removed
        (a message expunged meanwhile by someone else is not counted).
        """
        deleted_uids = [self.messages[i].uid for i in deleted]
        seen_uids = [self.messages[i].uid for i in seen]
        return self._store.run(self._commit, deleted_uids, seen_uids)

    def _commit(self, deleted_uids, seen_uids):
        if seen_uids:
            self._folder.store_flags(seen_uids, ["\\Seen"], "add")
        if deleted_uids:
            return len(self._folder.expunge(deleted_uids))
        return 0

    def close(self):
        """Forget the snapshot (the shared folder stays with the store)."""
        self.messages = []


class MaildropOpener:
    """Opens users' INBOX snapshots for POP3 sessions.

    Args:
        store: the process's :class:`~mailstack.store.store.MailStore`.
        uidl_format: a :class:`~mailstack.pop3d.uidl.UIDLFormat`.
    """

    def __init__(self, store, uidl_format):
        self.store = store
        self.uidl_format = uidl_format

    async def open(self, info):
        """Return the :class:`Maildrop` of a userdb entry (:class:`~mailstack.auth.request.UserInfo`).

        Raises:
            StoreError: the mailbox cannot be used (bad location, missing directory).
            OSError: the disk said no.
        """
        rule = "*:bytes=%d" % info.quota_bytes if info.quota_bytes else None
        mailbox = self.store.mailbox(info.user, info.home, info.mail or None, rule)
        return await self.store.run(self._open, mailbox)

    def _open(self, mailbox):
        mailbox.ensure()
        folder = mailbox.folder("INBOX")
        folder.sync()
        uidvalidity = folder.uidvalidity
        fmt = self.uidl_format
        messages = []
        for message in folder.messages():
            size = message.vsize
            if ",W=" not in message.base:
                try:
                    size = virtual_size(os.path.join(folder.path, message.relpath))
                except FileNotFoundError:
                    continue  # expunged since the sync
            uidl = fmt.format(message.uid, uidvalidity, guid=message.base, filename=message.base)
            messages.append(DropMessage(message.uid, size, uidl, message.relpath))
        return Maildrop(self.store, folder, messages)
