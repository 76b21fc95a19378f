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
* A lock also records its holder: ``PID:HOSTNAME`` is written into the
  lock file when it is created (the same text Dovecot's own dot-locks
  carry; a reader that ignores the content loses nothing).  A lock whose
  holder is on this host and no longer exists (``kill(pid, 0)`` fails with
  ESRCH) is broken at once instead of after ``stale_timeout``: a process
  killed while holding ``dovecot-uidlist.lock`` does not stall everyone
  else for two minutes.  A lock without a readable record (just created,
  being rewritten by :meth:`DotLock.replace`, or from another program), or
  from another host, or whose pid is alive (possibly reused) falls back to
  the age rule.  The content is checked twice, and the lock unlinked only
  if it is still the same inode: a new holder's lock is never removed.
* Breaking a stale lock has a small window in which two waiters may both
  decide it is stale; we unlink only when the inode is still the one we
  judged stale, which narrows it to the same window Dovecot has.
* Everything here blocks (it sleeps while waiting): call it from a thread.
"""

import errno
import os
import socket
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
            # The lock file holds the holder record; the new contents replace it.
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
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
        except FileExistsError:
            pass
        else:
            try:
                os.write(fd, holder_record())
            except OSError:
                os.close(fd)
                os.unlink(lock_path)
                raise
            return DotLock(path, fd)
        try:
            st = os.stat(lock_path)
        except FileNotFoundError:
            continue
        if _holder_is_dead(lock_path, st):
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


def holder_record(pid=None, host=None):
    """Return the ``PID:HOSTNAME`` bytes written into a new lock file.

    Args:
        pid: the holder's process id (default: this process).
        host: the holder's host name (default: ``socket.gethostname()``).
    """
    pid = os.getpid() if pid is None else pid
    host = socket.gethostname() if host is None else host
    return b"%d:%s" % (pid, host.encode("utf-8", "replace"))


def read_holder(lock_path):
    """Return ``(pid, host)`` recorded in a lock file, or None.

    None when the file is missing, empty, too long to be a record, or
    not in the ``PID:HOSTNAME`` form (e.g. it already holds new contents).
    """
    try:
        with open(lock_path, "rb") as f:
            data = f.read(300)
    except (FileNotFoundError, IsADirectoryError):
        return None
    pid, sep, host = data.partition(b":")
    if not sep or not pid.isdigit() or not host or len(data) >= 300 or b"\n" in data:
        return None
    try:
        return int(pid), host.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def process_alive(pid):
    """Return False only when no process ``pid`` exists on this host."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError as e:
        # EPERM: it exists but belongs to someone else.
        return e.errno != errno.ESRCH
    return True


def _holder_is_dead(lock_path, st):
    """Break the lock at ``lock_path`` (stat ``st``) if its holder on this host is gone.

    Returns True when the lock was (or already is) gone and acquiring may
    be retried at once.
    """
    holder = read_holder(lock_path)
    if holder is None:
        return False
    pid, host = holder
    if host != socket.gethostname() or process_alive(pid):
        return False
    try:
        again = os.stat(lock_path)
    except FileNotFoundError:
        return True
    # Still the same lock, still the same dead holder: a new holder's
    # lock (another inode, or a rewritten record) is left alone.
    if again.st_ino != st.st_ino or read_holder(lock_path) != holder:
        return False
    try:
        os.unlink(lock_path)
    except FileNotFoundError:
        return True
    log.warn("removed lock file {path} of dead process {pid}", path=lock_path, pid=pid)
    return True
