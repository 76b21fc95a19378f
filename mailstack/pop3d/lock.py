# -*- test-case-name: tests.pop3d.test_lock -*-
"""The POP3 session lock: one POP3 session per mailbox at a time.

RFC 1939 §8 asks the server to lock the maildrop for the whole session, so
that two POP3 clients of one user do not both download (and delete) the
same messages; the second one is told ``-ERR [IN-USE]`` (RFC 2449 §8.1.2).
IMAP sessions and deliveries are not excluded: they work through the store,
which copes with concurrent readers and writers on its own.

Two layers make the lock hold across everything that may serve a mailbox:

* an in-process registry (:class:`SessionLocks`, one per process through
  ``ctx.shared``), keyed by the mailbox's real path.  It is needed because
  POSIX record locks belong to a *process*: a second ``lockf`` from the same
  process would succeed;
* a POSIX record lock (``fcntl.lockf``) on ``mailstack-pop3-session.lock``
  in the maildir, for other mailstack processes and other hosts on shared
  storage (NFS forwards POSIX locks to the server).  The kernel drops the lock
  when the holder dies, so a crash never leaves a mailbox locked, unlike a
  dot-lock, and the lock file itself is never removed (removing it would let
  a waiter lock an unlinked inode).

Dovecot's own POP3 session lock (``pop3_lock_session``, off by default) is a
dot-lock with another name; the two do not exclude each other.

Taking the lock never waits: a held lock is reported at once.
"""

import errno
import fcntl
import os

LOCK_NAME = "mailstack-pop3-session.lock"


class MailboxInUse(Exception):
    """Another POP3 session holds the mailbox; ``str()`` says where the holder is."""


class SessionLock:
    """A held POP3 session lock; :meth:`release` it when the session ends."""

    def __init__(self, registry, key, fd):
        self._registry = registry
        self._key = key
        self._fd = fd

    @property
    def held(self):
        """True until :meth:`release` is called."""
        return self._fd is not None

    def release(self):
        """Release the lock; calling it again does nothing."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        self._registry._held.pop(self._key, None)
        os.close(fd)  # closing drops the POSIX lock


class SessionLocks:
    """The POP3 session locks of this process."""

    def __init__(self):
        self._held = {}

    def acquire(self, directory):
        """Lock the mailbox whose maildir is ``directory``; return a :class:`SessionLock`.

        Raises:
            MailboxInUse: a POP3 session of this or another process holds it.
            OSError: the lock file cannot be created (permissions, missing directory).
        """
        key = os.path.realpath(directory)
        if key in self._held:
            raise MailboxInUse("in use by another POP3 session of this process")
        fd = os.open(os.path.join(key, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EACCES, errno.EAGAIN):
                raise MailboxInUse("in use by another POP3 session (process lock)") from None
            raise
        lock = self._held[key] = SessionLock(self, key, fd)
        return lock

    def is_locked(self, directory):
        """Return True when this process holds the lock of ``directory``."""
        return os.path.realpath(directory) in self._held
