# -*- test-case-name: tests.util.test_aio -*-
"""fsync without threads: Linux native AIO driven by the reactor.

A durable write needs ``fsync``, which blocks for a disk flush (a
millisecond or more).  The reactor thread must not wait for it, and
handing every fsync to a Python thread pool costs more CPU than the SMTP
conversation itself: each job wakes a thread, and every system call the
thread makes passes the GIL back and forth with the busy reactor thread
(measured: about 60 futex calls and 35 context switches per queued
message, 0.8 ms of CPU).

Linux's native AIO (``io_submit`` with ``IOCB_CMD_FSYNC``, Linux 4.18 and
later) runs the fsync in a kernel worker and reports its completion
through an eventfd that the reactor watches like a socket: one
``io_submit`` (a few microseconds) per fsync, one ``read`` and one
``io_getevents`` per batch of completions, no Python thread at all.  The
system calls are made through :mod:`ctypes`; no extension module is
needed.

:func:`file_syncer` returns an :class:`AioSyncer` when the kernel offers
AIO, and a :class:`ThreadSyncer` (the reactor's thread pool) otherwise
(another OS, a sandbox that forbids ``io_setup``, ``MAILSTACK_AIO=no`` in
the environment).  Both have the same interface:

``fsync(fd)``
    A Deferred that fires with None once ``fsync(fd)`` has completed, or
    fails with :class:`OSError`.  The caller keeps ``fd`` open until then.

``sync_directory(path)``
    Group commit for a directory: a Deferred that fires once an fsync of
    ``path`` that *started after the call* has completed.  Callers that
    ask while one is running share the next one, so a burst of renames
    costs two directory fsyncs, not one each.

Note for CPU accounting: with AIO the kernel's fsync work runs in kernel
worker threads (``kworker``), so it is not charged to the server process;
``benchmarks/smtpd_throughput.py`` adds the kernel workers' CPU to
mailstack's figure for that reason.
"""

import collections
import ctypes
import os
import platform
import sys

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

log = Logger(namespace="mailstack.util.aio")

# System call numbers (asm-generic for aarch64).
_SYSCALLS = {
    "x86_64": {"io_setup": 206, "io_destroy": 207, "io_getevents": 208, "io_submit": 209},
    "aarch64": {"io_setup": 0, "io_destroy": 1, "io_submit": 2, "io_getevents": 4},
}
_IOCB_CMD_FSYNC = 2
_IOCB_FLAG_RESFD = 1
_EVENTS = 256           # completions fetched per io_getevents call
DEPTH = 1024            # fsyncs in flight per process; more wait in a Python queue


class _IOCB(ctypes.Structure):
    """``struct iocb`` (linux/aio_abi.h), little-endian layout."""

    _fields_ = [("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32), ("aio_rw_flags", ctypes.c_uint32),
                ("aio_lio_opcode", ctypes.c_uint16), ("aio_reqprio", ctypes.c_int16),
                ("aio_fildes", ctypes.c_uint32), ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64),
                ("aio_offset", ctypes.c_int64), ("aio_reserved2", ctypes.c_uint64), ("aio_flags", ctypes.c_uint32),
                ("aio_resfd", ctypes.c_uint32)]


class _Event(ctypes.Structure):
    """``struct io_event``."""

    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64), ("res", ctypes.c_int64),
                ("res2", ctypes.c_int64)]


class AioUnavailable(Exception):
    """The kernel (or the sandbox) does not offer native AIO here."""


class _DirectoryGroup:
    """Group commit state of one directory (see ``sync_directory``)."""

    def __init__(self, path):
        self.path = path
        self.running = None         # the waiters the fsync under way will satisfy
        self.next = []              # waiters that arrived while it ran

    def request(self, start_fsync):
        waiter = defer.Deferred()
        if self.running is None:
            self.running = [waiter]
            start_fsync(self)
        else:
            self.next.append(waiter)
        return waiter

    def finished(self, error, start_fsync):
        waiters, self.running = self.running, None
        if self.next:
            self.running, self.next = self.next, []
            start_fsync(self)
        for waiter in waiters:
            if error is None:
                waiter.callback(None)
            else:
                waiter.errback(error)


class _SyncerBase:
    def __init__(self):
        self._directories = {}

    def sync_directory(self, path):
        """Return a Deferred that fires once an fsync of ``path`` started after this call has completed."""
        group = self._directories.get(path)
        if group is None:
            group = self._directories[path] = _DirectoryGroup(path)
        return group.request(self._start_directory_fsync)

    def _start_directory_fsync(self, group):
        # The directory is opened per fsync (one fsync serves a whole group of
        # callers), so no descriptor is held for directories no longer in use.
        try:
            fd = os.open(group.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            self._directory_done(None, group, None, err)
            return
        self.fsync(fd).addCallbacks(self._directory_done, lambda failure: self._directory_done(
            None, group, fd, failure.value), callbackArgs=(group, fd, None))

    def _directory_done(self, _ignored, group, fd, error):
        if fd is not None:
            os.close(fd)
        group.finished(error, self._start_directory_fsync)
        if group.running is None:
            self._directories.pop(group.path, None)


class ThreadSyncer(_SyncerBase):
    """fsync in the reactor's thread pool (the portable fallback)."""

    kind = "threads"

    def __init__(self, reactor, threadpool=None):
        super().__init__()
        self._reactor = reactor
        self._threadpool = threadpool

    def fsync(self, fd):
        pool = self._threadpool or self._reactor.getThreadPool()
        return deferToThreadPool(self._reactor, pool, os.fsync, fd)

    def close(self):
        pass


class AioSyncer(_SyncerBase):
    """fsync through Linux native AIO; completions arrive on an eventfd the reactor reads.

    Raises:
        AioUnavailable: when ``io_setup`` or ``eventfd`` is not available.
    """

    kind = "aio"

    def __init__(self, reactor, depth=DEPTH):
        super().__init__()
        numbers = _SYSCALLS.get(platform.machine())
        if not sys.platform.startswith("linux") or numbers is None or sys.byteorder != "little" \
                or not hasattr(os, "eventfd"):
            raise AioUnavailable("native AIO is only used on little-endian Linux (x86_64, aarch64)")
        self._nr = numbers
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = self._libc.syscall
        self._syscall.restype = ctypes.c_long
        self._ctx = ctypes.c_ulong(0)
        if self._syscall(numbers["io_setup"], depth, ctypes.byref(self._ctx)) < 0:
            err = ctypes.get_errno()
            raise AioUnavailable("io_setup: %s" % os.strerror(err))
        try:
            self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError as err:
            self._syscall(numbers["io_destroy"], self._ctx)
            raise AioUnavailable("eventfd: %s" % err.strerror) from None
        self._reactor = reactor
        self._depth = depth
        self._inflight = {}                     # key -> (iocb, Deferred)
        self._waiting = collections.deque()     # (fd, Deferred) beyond the depth
        self._next_key = 1
        self._events = (_Event * _EVENTS)()
        self._zero = (ctypes.c_long * 2)(0, 0)
        self._one = (ctypes.POINTER(_IOCB) * 1)()
        self._reading = False
        self._closed = False

    # -- the interface -------------------------------------------------------

    def fsync(self, fd):
        """Start ``fsync(fd)``; return a Deferred firing with None, or failing with OSError."""
        d = defer.Deferred()
        if self._closed:
            d.errback(OSError(9, "fsync after the syncer was closed"))
            return d
        if len(self._inflight) >= self._depth or self._waiting:
            self._waiting.append((fd, d))
        else:
            self._submit(fd, d)
        return d

    def close(self):
        """Stop watching completions and release the AIO context (waits for fsyncs in flight)."""
        if self._closed:
            return
        self._closed = True
        if self._reading:
            self._reactor.removeReader(self)
            self._reading = False
        self._syscall(self._nr["io_destroy"], self._ctx)   # blocks until in-flight requests finish
        os.close(self._eventfd)

    # -- submission and completion ---------------------------------------------

    def _submit(self, fd, d):
        """Submit one fsync; return False when the ring was full and the request went back to the queue."""
        key = self._next_key
        self._next_key += 1
        iocb = _IOCB(aio_data=key, aio_lio_opcode=_IOCB_CMD_FSYNC, aio_fildes=fd,
                     aio_flags=_IOCB_FLAG_RESFD, aio_resfd=self._eventfd)
        self._one[0] = ctypes.pointer(iocb)
        result = self._syscall(self._nr["io_submit"], self._ctx, 1, self._one)
        if result != 1:
            err = ctypes.get_errno() if result < 0 else 11
            if err == 11 and self._inflight:    # EAGAIN: the ring is full; retry on a completion
                self._waiting.appendleft((fd, d))
                return False
            d.errback(OSError(err, "io_submit(fsync): %s" % os.strerror(err)))
            return True
        self._inflight[key] = (iocb, d)
        if not self._reading:
            # Registered once and left registered: an idle eventfd costs epoll nothing.
            self._reading = True
            self._reactor.addReader(self)
        return True

    def fileno(self):
        return self._eventfd

    def logPrefix(self):
        return "aio"

    def connectionLost(self, reason):
        self._reading = False

    def doRead(self):
        try:
            os.eventfd_read(self._eventfd)
        except BlockingIOError:
            pass
        fired = []
        while True:
            count = self._syscall(self._nr["io_getevents"], self._ctx, 0, _EVENTS, self._events, self._zero)
            if count <= 0:
                break
            for index in range(count):
                event = self._events[index]
                entry = self._inflight.pop(event.data, None)
                if entry is not None:
                    fired.append((entry[1], event.res))
            if count < _EVENTS:
                break
        while self._waiting and len(self._inflight) < self._depth:
            if not self._submit(*self._waiting.popleft()):
                break
        for d, res in fired:
            if res < 0:
                d.errback(OSError(-res, "fsync: %s" % os.strerror(-res)))
            else:
                d.callback(None)


_SYNCERS = {}


def file_syncer(reactor):
    """Return this process's syncer for ``reactor``: an :class:`AioSyncer` where possible, else a :class:`ThreadSyncer`.

    One per reactor and process (one AIO context, one eventfd), shared by
    every user in the process (the queue writers).  ``MAILSTACK_AIO=no`` in
    the environment forces the thread pool.
    """
    key = (id(reactor), os.getpid())
    syncer = _SYNCERS.get(key)
    if syncer is None:
        if os.environ.get("MAILSTACK_AIO", "").lower() not in ("no", "0", "off", "false"):
            try:
                syncer = AioSyncer(reactor)
            except AioUnavailable as err:
                log.info("native AIO not available ({reason}); fsync runs in the thread pool", reason=err)
        if syncer is None:
            syncer = ThreadSyncer(reactor)
        _SYNCERS[key] = syncer
    return syncer
