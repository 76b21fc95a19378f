# -*- test-case-name: tests.store.test_mailbox -*-
"""The process-wide mail store: mailboxes, shared folders, thread pool, watches.

Services get it with ``ctx.shared("store", lambda: MailStore.from_context(ctx))``
(:func:`shared`), so that every service of one process shares one folder
object per maildir directory, one set of listeners and one inotify
descriptor.

Parameters read: ``mail_location``, ``myhostname``, ``mail_fsync``,
``mailbox_idle_check_interval``, ``quota_rule``, ``quota_full_tempfail``.
"""

import collections
import os
import threading
import weakref

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from mailstack.store import quota as quota_mod
from mailstack.store.folder import Folder
from mailstack.store.mailbox import Mailbox, expand_location
from mailstack.store.notify import FolderWatch

log = Logger(namespace="mailstack.store")


class MailStore:
    """Opens users' maildirs and keeps one :class:`Folder` per directory.

    Args:
        reactor: the reactor (for the thread pool, listener calls and polls);
            None for purely blocking use (tools, child processes).
        config: a :class:`~mailstack.config.maincf.Config`, or None for defaults.
        hostname: the host name in new file names (default ``myhostname``).
        fsync: fsync files and directories (``mail_fsync`` != never).
        poll_interval: seconds between polls of watched folders (0: no polling).
        use_inotify: use Linux inotify for watched folders when available.
        clock: what schedules the polls (an ``IReactorTime``; the reactor by default).
        cache_size: how many recently used folders stay in memory when unused.
    """

    cache_size = 16

    def __init__(self, reactor=None, config=None, hostname=None, fsync=None, poll_interval=None,
                 use_inotify=True, clock=None, cache_size=None):
        self.reactor = reactor
        if cache_size is not None:
            self.cache_size = cache_size
        self.clock = clock or reactor
        self.config = config
        self.hostname = hostname or (config["myhostname"] if config is not None else None)
        if fsync is None:
            fsync = config["mail_fsync"] != "never" if config is not None else True
        self.fsync = fsync
        if poll_interval is None:
            poll_interval = config["mailbox_idle_check_interval"] if config is not None else 30.0
        self.poll_interval = poll_interval
        self.default_location = config["mail_location"] if config is not None else "maildir:~/Maildir"
        self.quota_rule = config["quota_rule"] if config is not None else ""
        self.quota_tempfail = config["quota_full_tempfail"] if config is not None else False
        self._use_inotify = use_inotify
        self._inotify = None
        self._folders = weakref.WeakValueDictionary()
        # The most recently opened folders stay in memory even when nobody
        # holds them, so that a new POP3/IMAP session finds them warm.
        self._recent = collections.OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_context(cls, ctx):
        """Build the store of a :class:`~mailstack.app.ServerContext`."""
        return cls(ctx.reactor, ctx.config)

    def mailbox(self, user="", home="", location=None, quota_rule=None):
        """Return the :class:`Mailbox` of a user.  No disk access.

        Args:
            user: the user name (``%u``).
            home: the home directory (``~``, ``%h``).
            location: the userdb's ``mail`` field; ``mail_location`` when None/empty.
            quota_rule: the userdb's quota rule; ``quota_rule`` when None.

        Raises:
            StoreError: for an unusable location.  ValueError: for a bad quota rule.
        """
        root = expand_location(location or self.default_location, user, home)
        rule = self.quota_rule if quota_rule is None else quota_rule
        limit_bytes, limit_count = quota_mod.parse_rule(rule)
        configured = limit_bytes is not None or limit_count is not None
        quota = quota_mod.Quota(root, limit_bytes, limit_count, tempfail=self.quota_tempfail,
                                configured=configured, fsync=self.fsync)
        return Mailbox(self, root, quota, user)

    def folder(self, mailbox, name, path):
        """Return the one :class:`Folder` of this process for ``path``."""
        key = os.path.realpath(path)
        with self._lock:
            folder = self._folders.get(key)
            if folder is None:
                folder = Folder(name, path, mailbox=mailbox, reactor=self.reactor, fsync=self.fsync,
                                hostname=self.hostname, uidvalidity_factory=mailbox.new_uidvalidity)
                if self.reactor is not None:
                    folder.watch = FolderWatch(folder, self)
                self._folders[key] = folder
            self._recent[key] = folder
            self._recent.move_to_end(key)
            while len(self._recent) > self.cache_size:
                self._recent.popitem(last=False)
            return folder

    def poke(self, path):
        """Tell the store that ``path`` (a folder's maildir) changed behind its back.

        For writers that put files into a maildir without going through a
        :class:`Folder` (a delivery agent using :func:`.maildir.deliver`):
        when the folder is open in this process and watched, it is synced
        at once instead of at the next inotify event or poll.  Thread-safe;
        a no-op for folders nobody watches.
        """
        folder = self._folders.get(os.path.realpath(path))
        if folder is not None and folder.watch is not None and self.reactor is not None:
            self.reactor.callFromThread(folder.watch.poke)

    def forget(self, path):
        """Drop the folder of ``path`` (after a rename or delete); its watch stops."""
        with self._lock:
            folder = self._folders.pop(os.path.realpath(path), None)
            self._recent.pop(os.path.realpath(path), None)
        if folder is not None and folder.watch is not None and self.reactor is not None:
            self.reactor.callFromThread(folder.watch.stop)

    def run(self, function, *args, **kwargs):
        """Run a blocking store call in the reactor's thread pool; return a Deferred."""
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args, **kwargs)

    def inotify(self):
        """Return the process's started INotify, or None where it is unavailable."""
        if self._inotify is None and self._use_inotify and self.reactor is not None:
            try:
                from twisted.internet import inotify
                self._inotify = inotify.INotify(self.reactor)
                self._inotify.startReading()
            except Exception:
                self._use_inotify = False
                self._inotify = None
        return self._inotify

    def close(self):
        """Stop every watch and the inotify descriptor."""
        for folder in list(self._folders.values()):
            if folder.watch is not None:
                folder.watch.stop()
        if self._inotify is not None:
            self._inotify.loseConnection()
            self._inotify = None


def shared(ctx):
    """Return the process-wide MailStore of service context ``ctx``."""
    return ctx.shared("store", lambda: MailStore.from_context(ctx))
