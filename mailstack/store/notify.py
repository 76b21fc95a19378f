# -*- test-case-name: tests.store.test_notify -*-
"""Change notification for folders: one watch per folder, fanned out to listeners.

An IMAP session in IDLE (or any component) implements
:class:`FolderListener` and calls ``folder.add_listener(listener)``.  It is
told, in the reactor thread:

* at once about changes made through the store in this process (delivery,
  APPEND, STORE, EXPUNGE call the listeners when they finish);
* about changes by other processes (Dovecot, mutt, a second mailstack,
  a POP3 server on another host) through a :class:`FolderWatch`: Linux
  inotify on ``new/`` and ``cur/`` where available, plus a poll of the
  directories' mtimes every ``mailbox_idle_check_interval`` seconds (which
  also covers NFS, where inotify does not see other hosts' changes).

A watch exists once per folder, however many listeners there are (10,000
IDLE sessions on one INBOX cost one inotify watch and one sync per
change); its syncs run in the reactor's thread pool and are coalesced:
while one runs, further events only mark that one more is needed.
"""

import os

from twisted.internet import defer, task
from twisted.logger import Logger

log = Logger(namespace="mailstack.store")

def _inotify_mask():
    from twisted.internet import inotify
    return (inotify.IN_CREATE | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM | inotify.IN_DELETE)


class FolderListener:
    """What a folder listener implements (subclass it, or provide the same methods).

    Every method is called in the reactor thread with the folder and the
    changes, after the folder's view (``folder.messages()``) reflects them.
    """

    def messages_added(self, folder, messages):
        """New messages arrived: a tuple of :class:`~.folder.Message`, ascending UIDs."""

    def messages_expunged(self, folder, uids):
        """Messages are gone: a tuple of UIDs."""

    def flags_changed(self, folder, messages):
        """Messages were re-flagged: a tuple of :class:`~.folder.Message` in their new state."""


class FolderWatch:
    """Watches one folder's directories for other processes' changes.

    Args:
        folder: the :class:`~.folder.Folder`.
        store: the :class:`~.store.MailStore` (reactor, thread pool, inotify).
    """

    def __init__(self, folder, store):
        self.folder = folder
        self.store = store
        self.running = False
        self._paths = []
        self._loop = None
        self._syncing = False
        self._again = False
        self._stamp = None
        self._idle = []
        self.syncs = 0

    def start(self):
        """Start watching (inotify when available, and polling)."""
        if self.running:
            return
        self.running = True
        notifier = self.store.inotify()
        if notifier is not None:
            from twisted.python.filepath import FilePath
            for sub in ("new", "cur"):
                path = FilePath(os.path.join(self.folder.path, sub).encode())
                try:
                    notifier.watch(path, mask=_inotify_mask(), callbacks=[self._notified])
                    self._paths.append(path)
                except Exception:
                    log.failure("inotify watch on {path} failed; polling only", path=path.path)
        if self.store.poll_interval:
            self._loop = task.LoopingCall(self._poll)
            self._loop.clock = self.store.clock
            self._loop.start(self.store.poll_interval, now=False)
        self.request_sync()

    def stop(self):
        """Stop watching."""
        if not self.running:
            return
        self.running = False
        notifier = self.store.inotify()
        for path in self._paths:
            try:
                notifier.ignore(path)
            except KeyError:
                pass
        self._paths = []
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _notified(self, _ignored, _filepath, _mask):
        self.request_sync()

    def poke(self):
        """Sync now if the watch is running (see :meth:`MailStore.poke`)."""
        if self.running:
            self.request_sync()

    def _poll(self):
        stamp = []
        for sub in ("new", "cur"):
            try:
                stamp.append(os.stat(os.path.join(self.folder.path, sub)).st_mtime_ns)
            except OSError:
                stamp.append(None)
        if stamp != self._stamp:
            self._stamp = stamp
            self.request_sync()

    def request_sync(self):
        """Sync the folder in the thread pool soon; coalesces with a running sync."""
        if self._syncing:
            self._again = True
            return
        self._syncing = True
        self.syncs += 1
        d = self.store.run(self.folder.sync)
        d.addErrback(self._failed)
        d.addBoth(self._done)

    def _failed(self, failure):
        log.failure("sync of {path} failed", failure, path=self.folder.path)

    def _done(self, _result):
        self._syncing = False
        if self._again and self.running:
            self._again = False
            self.request_sync()
            return
        waiters, self._idle = self._idle, []
        for waiter in waiters:
            waiter.callback(None)

    def idle(self):
        """Return a Deferred that fires when no sync of this watch is running or pending."""
        if not self._syncing:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle.append(d)
        return d
