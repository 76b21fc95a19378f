# -*- test-case-name: tests.store.test_mailbox -*-
"""One user's maildir: Maildir++ folders, subscriptions, quota, delivery.

Layout (Maildir++, as Dovecot's ``maildir:`` with its default ``.``
separator)::

    Maildir/                    INBOX (cur/ new/ tmp/, dovecot-uidlist...)
    Maildir/.Sent/              folder "Sent" (with a ``maildirfolder`` file)
    Maildir/.Archive.2024/      folder "Archive.2024" (child of "Archive")
    Maildir/.Entw&APw-rfe/      folder "Entwürfe" (modified UTF-7 on disk)
    Maildir/subscriptions       see :mod:`.subscriptions`
    Maildir/maildirsize         see :mod:`.quota`
    Maildir/dovecot-uidvalidity last UIDVALIDITY handed out (hex), as Dovecot

Folder names in this API are Unicode with ``.`` as the hierarchy
separator; ``INBOX`` (any case) is the root.  The maildir and the default
folders (:data:`DEFAULT_FOLDERS`, subscribed) are created on first use by
:meth:`Mailbox.ensure`.

Mail locations are Dovecot's: ``maildir:PATH[:OPTION=...]`` with ``~``
(home), ``%u`` (user), ``%n`` (local part), ``%d`` (domain), ``%h`` (home)
and ``%%`` expanded by :func:`expand_location`.

Every method that touches the disk blocks; :class:`Mailbox` methods ending
in ``_async`` (and the store's ``run``) run them in the reactor's thread pool.
"""

import os
import shutil
import time

from mailstack.store import dotlock, maildir, mutf7, subscriptions
from mailstack.store.errors import BadFolderName, FolderExists, FolderNotFound, StoreError
from mailstack.store.quota import Quota

SEPARATOR = "."
DEFAULT_FOLDERS = ("Drafts", "Sent", "Trash", "Junk", "Archive")
UIDVALIDITY_FILE = "dovecot-uidvalidity"


def expand_location(location, user="", home=""):
    """Return the maildir path of a Dovecot mail location string.

    Args:
        location: ``maildir:PATH[:KEY=VALUE...]`` (or a bare path).
        user: the full user name (``alice@example.com``).
        home: the user's home directory.

    Raises:
        StoreError: for a location that is not a maildir, or needs a home that is not set.
    """
    kind, sep, rest = location.partition(":")
    if not sep:
        kind, rest = "maildir", location
    if kind != "maildir":
        raise StoreError("mail location %r: only maildir: is supported" % location)
    path = rest.split(":")[0]
    local, _, domain = user.partition("@")
    out = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "%" and i + 1 < len(path):
            code = path[i + 1]
            value = {"u": user, "n": local, "d": domain, "h": home, "%": "%"}.get(code)
            if value is None:
                raise StoreError("mail location %r: unknown variable %%%s" % (location, code))
            if code == "h" and not home:
                raise StoreError("mail location %r needs a home directory" % location)
            out.append(value)
            i += 2
            continue
        if char == "~" and i == 0:
            if not home:
                raise StoreError("mail location %r needs a home directory" % location)
            out.append(home)
            i += 1
            continue
        out.append(char)
        i += 1
    result = "".join(out)
    if not result:
        raise StoreError("mail location %r has no path" % location)
    return os.path.normpath(result)


def folder_dirname(name):
    """Return the directory name (``.Sent``) of folder ``name``, or "" for INBOX.

    Raises:
        BadFolderName: for an empty part or a ``/``.
    """
    if name.upper() == "INBOX":
        return ""
    parts = name.split(SEPARATOR)
    if parts[0].upper() == "INBOX" and len(parts) > 1:
        raise BadFolderName("folders below INBOX are not supported: %r" % name)
    for part in parts:
        if not part or "/" in part or part in (".", ".."):
            raise BadFolderName("bad folder name %r" % name)
    return "." + SEPARATOR.join(mutf7.encode(p) for p in parts)


def folder_name(dirname):
    """Return the folder name of directory ``dirname`` (``.Entw&APw-rfe`` → ``Entwürfe``).

    Raises:
        ValueError: when the name is not valid modified UTF-7.
    """
    return SEPARATOR.join(mutf7.decode(p) for p in dirname[1:].split(SEPARATOR))


class Mailbox:
    """A user's maildir.

    Obtain one with :meth:`MailStore.mailbox` rather than directly, so that
    folders are shared by everyone in the process.

    Attributes:
        root: the maildir (INBOX) directory.
        store: the :class:`~mailstack.store.store.MailStore`.
        quota: the :class:`~mailstack.store.quota.Quota`.
        user: the user name (for logs).
    """

    def __init__(self, store, root, quota=None, user=""):
        self.store = store
        self.root = root
        self.user = user
        self.quota = quota or Quota(root, fsync=store.fsync)

    def __repr__(self):
        return "<Mailbox %s at %s>" % (self.user or "?", self.root)

    # -- folders -----------------------------------------------------------

    def ensure(self):
        """Create the maildir and its default folders if missing; return self.  Blocks."""
        if os.path.isdir(os.path.join(self.root, "cur")):
            return self
        maildir.ensure(self.root)
        for name in DEFAULT_FOLDERS:
            path = os.path.join(self.root, folder_dirname(name))
            if not os.path.isdir(path):
                self._make_folder(path)
        subscriptions.change(self.root, subscribe=DEFAULT_FOLDERS, fsync=self.store.fsync)
        return self

    def _make_folder(self, path):
        maildir.ensure(path)
        open(os.path.join(path, "maildirfolder"), "a").close()

    def folder_path(self, name):
        """Return the directory of folder ``name`` (it may not exist).  Raises BadFolderName."""
        dirname = folder_dirname(name)
        return os.path.join(self.root, dirname) if dirname else self.root

    def folder(self, name="INBOX"):
        """Return the process-wide :class:`~mailstack.store.folder.Folder` for ``name``.

        No disk access; the folder's methods raise FolderNotFound when it
        does not exist.  Raises BadFolderName.
        """
        canonical = "INBOX" if name.upper() == "INBOX" else name
        return self.store.folder(self, canonical, self.folder_path(name))

    def list_folders(self):
        """Return all folder names, INBOX first, then sorted.  Blocks (one readdir)."""
        self.ensure()
        names = []
        for entry in os.listdir(self.root):
            if not entry.startswith(".") or entry in (".", ".."):
                continue
            if not os.path.isdir(os.path.join(self.root, entry, "cur")):
                continue
            try:
                names.append(folder_name(entry))
            except ValueError:
                continue
        return ["INBOX"] + sorted(names)

    def create_folder(self, name):
        """Create folder ``name``; return its Folder.  Blocks.

        Raises:
            FolderExists: when it exists.  BadFolderName: for a bad name.
        """
        self.ensure()
        path = self.folder_path(name)
        if path == self.root or os.path.isdir(os.path.join(path, "cur")):
            raise FolderExists("folder %s already exists" % name)
        self._make_folder(path)
        return self.folder(name)

    def delete_folder(self, name):
        """Delete folder ``name`` and its messages (not its children).  Blocks.

        Raises:
            FolderNotFound: when it does not exist.  BadFolderName: for INBOX.
        """
        if name.upper() == "INBOX":
            raise BadFolderName("INBOX cannot be deleted")
        path = self.folder_path(name)
        if not os.path.isdir(os.path.join(path, "cur")):
            raise FolderNotFound("folder %s does not exist" % name)
        folder = self.folder(name)
        used = len(folder.messages()) if folder._synced else None
        # Rename first so that the folder disappears atomically for others.
        trash = os.path.join(self.root, "tmp", "deleted" + os.path.basename(path) + maildir.unique_base())
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        self.store.forget(path)
        if used or used is None:
            if self.quota.active:
                self.quota.recalculate()
        subscriptions.change(self.root, unsubscribe=[name], fsync=self.store.fsync)

    def rename_folder(self, old, new):
        """Rename folder ``old`` (and its children) to ``new``; UIDs stay.  Blocks.

        Raises:
            FolderNotFound, FolderExists, BadFolderName.
        """
        if old.upper() == "INBOX":
            raise BadFolderName("renaming INBOX is not supported")
        src, dst = self.folder_path(old), self.folder_path(new)
        if not os.path.isdir(os.path.join(src, "cur")):
            raise FolderNotFound("folder %s does not exist" % old)
        if os.path.exists(dst):
            raise FolderExists("folder %s already exists" % new)
        children = [n for n in self.list_folders() if n.startswith(old + SEPARATOR)]
        os.rename(src, dst)
        self.store.forget(src)
        for child in children:
            child_src = self.folder_path(child)
            os.rename(child_src, self.folder_path(new + child[len(old):]))
            self.store.forget(child_src)

    # -- subscriptions ---------------------------------------------------------

    def subscriptions(self):
        """Return the subscribed folder names.  Blocks."""
        return subscriptions.read(self.root, SEPARATOR)

    def subscribe(self, name):
        """Subscribe to ``name``.  Blocks."""
        self.ensure()
        subscriptions.change(self.root, subscribe=[name], fsync=self.store.fsync)

    def unsubscribe(self, name):
        """Unsubscribe from ``name``.  Blocks."""
        subscriptions.change(self.root, unsubscribe=[name], fsync=self.store.fsync)

    # -- delivery ----------------------------------------------------------------

    def deliver(self, data, folder="INBOX", flags=(), internaldate=None):
        """Deliver ``data`` into ``folder`` (created if missing); return the Message.  Blocks.

        This is what local delivery calls (through :meth:`deliver_async`).

        Raises:
            QuotaExceeded: with ``temporary`` per ``quota_full_tempfail``.
            StoreError: for other permanent problems.
            OSError: for file system errors (treat as temporary).
        """
        self.ensure()
        target = self.folder(folder)
        if folder.upper() != "INBOX" and not target.exists():
            self._make_folder(target.path)
        return target.append(data, flags, internaldate=internaldate)

    def deliver_async(self, data, folder="INBOX", flags=(), internaldate=None):
        """:meth:`deliver` in the reactor's thread pool; returns a Deferred firing with the Message."""
        return self.store.run(self.deliver, data, folder, flags, internaldate)

    def new_uidvalidity(self):
        """Return a new UIDVALIDITY, larger than any handed out in this maildir.  Blocks.

        As Dovecot: the last value is kept in hex in ``dovecot-uidvalidity``
        (plus an empty marker file ``dovecot-uidvalidity.<hex>``); the new one
        is the larger of the current time and the last plus one.
        """
        path = os.path.join(self.root, UIDVALIDITY_FILE)
        os.makedirs(self.root, exist_ok=True)
        lock = dotlock.acquire(path)
        try:
            try:
                with open(path) as handle:
                    last = int(handle.read().strip() or "0", 16)
            except (FileNotFoundError, ValueError):
                last = 0
            value = max(int(time.time()), last + 1) & 0xFFFFFFFF or 1
            lock.replace(b"%08x" % value, fsync=self.store.fsync)
            marker = os.path.join(self.root, "%s.%08x" % (UIDVALIDITY_FILE, last))
            new_marker = os.path.join(self.root, "%s.%08x" % (UIDVALIDITY_FILE, value))
            try:
                os.rename(marker, new_marker)
            except FileNotFoundError:
                open(new_marker, "a").close()
            return value
        finally:
            lock.release()
