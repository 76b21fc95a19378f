# -*- test-case-name: tests.store.test_uidlist -*-
"""Dovecot-compatible dot-locks (``FILE.lock``).

Dovecot guards ``dovecot-uidlist``, ``dovecot-keywords`` and its other
small maildir files with a *dot-lock*: the lock is the file ``FILE.lock``,
created with ``O_CREAT|O_EXCL`` (atomic on local file systems and NFSv3+).
Whoever holds it may either just delete it when done, or write the new
contents of FILE into the lock file and ``rename()`` it over FILE, which
replaces the file and releases the lock in one atomic step.  mailstack
takes the same locks, so a Dovecot and a mailstack working on one maildir
exclude each other.

Races and invariants:

* A process that dies while holding the lock leaves the lock file behind.
  A lock whose mtime is older than ``stale_timeout`` (Dovecot uses two
  minutes for the uidlist) and that has not changed while we waited is
  broken by unlinking it.  The holder refreshes the lock's mtime
  (:meth:`DotLock.touch`) during long work so that it is never considered
  stale while alive.
* Breaking a stale lock has a small window in which two waiters may both
  decide it is stale; we unlink only when the inode is still the one we
  judged stale, which narrows it to the same window Dovecot has.
* Everything here blocks (it sleeps while waiting): call it from a thread.
"""

import os
import time

from twisted.logger import Logger

log = Logger(namespace="mailstack.store")


class LockTimeout(OSError):
    """The dot-lock could not be taken within the timeout."""


class DotLock:
    """A held dot-lock on ``path`` (the lock file is ``path + ".lock"``).

    Use :func:`acquire` (or the context manager protocol) to obtain one.

    Attributes:
        path: the protected file.
        lock_path: the lock file.
    """

    def __init__(self, path, fd):
        self.path = path
        self.lock_path = path + ".lock"
        self._fd = fd

    def touch(self):
        """Refresh the lock's mtime so that others do not consider it stale."""
        os.utime(self._fd)

    def replace(self, data, fsync=True):
        """Write ``data`` (bytes) as the new contents of the file and release the lock.

        The data goes into the lock file, which is then renamed over the
        protected file: readers see either the old or the new file, never a
        partial one.
        """
        fd, self._fd = self._fd, None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(self.lock_path, self.path)

    def release(self):
        """Release the lock without changing the protected file."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)
        try:
            os.unlink(self.lock_path)
        except FileNotFoundError:
            pass

    @property
    def held(self):
        """True until :meth:`replace` or :meth:`release` is called."""
        return self._fd is not None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def acquire(path, timeout=300.0, stale_timeout=120.0, mode=0o600, clock=time.monotonic, sleep=time.sleep):
    """Take the dot-lock of ``path``; return a :class:`DotLock`.

    Blocks (sleeping) until the lock is free, breaking it when stale.

    Args:
        path: the file to protect; ``path + ".lock"`` is created.
        timeout: give up after this many seconds.
        stale_timeout: a lock unchanged for this long is considered abandoned.
        mode: permissions of the lock file (it becomes the file on replace).

    Raises:
        LockTimeout: when the lock stays held for ``timeout`` seconds.
        OSError: when the directory is missing or not writable.
    """
    lock_path = path + ".lock"
    deadline = clock() + timeout
    delay = 0.001
    seen = None
    while True:
        try:
            fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            return DotLock(path, fd)
        except FileExistsError:
            pass
        try:
            st = os.stat(lock_path)
        except FileNotFoundError:
            continue
        identity = (st.st_ino, st.st_mtime_ns, st.st_size)
        if time.time() - st.st_mtime > stale_timeout and identity == seen:
            try:
                if os.stat(lock_path).st_ino == st.st_ino:
                    os.unlink(lock_path)
                    log.warn("removed stale lock file {path} (unchanged for {age:.0f}s)",
                             path=lock_path, age=time.time() - st.st_mtime)
            except FileNotFoundError:
                pass
            continue
        seen = identity
        if clock() >= deadline:
            raise LockTimeout("timed out waiting for %s" % lock_path)
        sleep(delay)
        delay = min(delay * 2, 0.1)
