# -*- test-case-name: tests.queue.test_store -*-
"""The queue directory and the durable message writer (the queue API contract).

Layout under ``queue_directory`` (Postfix's)::

    maildrop/   messages from sendmail(1), waiting for pickup
    incoming/   complete messages waiting for the queue manager
    active/     messages the queue manager is delivering
    deferred/   messages that failed temporarily; the file's mtime is the next attempt
    hold/       messages put on hold by postsuper -h
    corrupt/    damaged files, kept for the administrator
    defer/      per-message delivery status logs of deferred recipients
    bounce/     per-message logs of bounced recipients, until the bounce is queued

Design note on races and invariants
-----------------------------------
A message is *queued* when its complete file (with its ``E`` record) has
a queue-id name in one of incoming/, active/, deferred/ or hold/.  Writers
create ``incoming/ID.tmp`` (``O_EXCL``: a queue-id collision is retried,
never overwrites) -- at once, or (``create=False``, what smtpd uses) only
when the content outgrows one 256 KiB write chunk or at commit -- write the
content, append the envelope at commit, then ``fsync`` the file, ``rename``
it to ``incoming/ID`` and ``fsync`` the directory; the fsyncs run off the
reactor thread through :mod:`mailstack.util.aio` (native AIO, or the
thread pool).  Only then does ``commit`` return, and only then may the
SMTP server answer 250.  A crash before the
rename leaves a ``.tmp`` file that nobody reads; the queue manager removes
stale ones at start.

Moving between queues is ``rename`` within one file system, which is
atomic: a file is in exactly one queue at any time.  Several queue
managers (processes or hosts sharing the directory) claim a message by
renaming it out of incoming/ or deferred/; the loser's rename fails with
ENOENT and it simply skips that message.

Parameters read: ``queue_directory``, ``myhostname``.
"""

import errno
import os
import time

from twisted.internet.threads import deferToThreadPool

from mailstack.common.queue_id import new_queue_id
from mailstack.queue import qfile
from mailstack.util.aio import file_syncer
from mailstack.util.atomic import sync_dir

QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")
LOGS = ("defer", "bounce")
TMP_SUFFIX = ".tmp"

# Content is written to the file in chunks of this size: one write of a
# page-cache-sized buffer does not hold the reactor for long.
_FLUSH_AT = 256 * 1024


class QueueError(Exception):
    """A temporary queue failure (disk full, I/O error).

    Callers answer ``451 4.3.0`` (or ``452 4.3.1`` for ENOSPC, see :attr:`enospc`).
    """

    @property
    def enospc(self):
        cause = self.__cause__
        return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)


class MailQueue:
    """One queue directory.

    Args:
        queue_directory: the root of the queue.
        reactor: runs the threads for fsync.
        threadpool: the pool for blocking work; the reactor's when None.
        hostname: this host's name (for logs and bounces).
    """

    def __init__(self, queue_directory, reactor, threadpool=None, hostname=""):
        self.directory = queue_directory
        self.reactor = reactor
        self._threadpool = threadpool
        self.hostname = hostname
        self._listeners = []
        self._file_syncer = None
        self._trigger = None
        for name in QUEUES + LOGS:
            os.makedirs(os.path.join(queue_directory, name), mode=0o700, exist_ok=True)

    def sync_directory(self, queue):
        """fsync the directory of ``queue``, shared with concurrent callers (:func:`mailstack.util.atomic.sync_dir`).  Blocks."""
        sync_dir(self.path(queue))

    @property
    def syncer(self):
        """The process's fsync service (:func:`mailstack.util.aio.file_syncer`)."""
        if self._file_syncer is None:
            self._file_syncer = file_syncer(self.reactor)
        return self._file_syncer

    @property
    def threadpool(self):
        if self._threadpool is None:
            self._threadpool = self.reactor.getThreadPool()
        return self._threadpool

    def in_thread(self, function, *args):
        """Run ``function(*args)`` in the queue's thread pool; return a Deferred."""
        return deferToThreadPool(self.reactor, self.threadpool, function, *args)

    def path(self, queue, queue_id=""):
        """Return the path of ``queue`` (a directory name) or of a file in it."""
        return os.path.join(self.directory, queue, queue_id) if queue_id else os.path.join(self.directory, queue)

    def new_message(self, queue="incoming", create=True):
        """Start a new message; its id is ``writer.queue_id``.

        With ``create`` the temporary file is created now (blocking: call it
        in a thread, or where a short wait does not matter).  Without it,
        content is kept in memory until the file is needed: at commit for a
        message smaller than the write chunk (256 KiB), so a small message
        costs one create, one write and the fsyncs, all at commit.

        Raises:
            QueueError: when the file cannot be created.
        """
        return QueueFileWriter(self, queue, create)

    def add_listener(self, callback):
        """Call ``callback()`` whenever :meth:`notify` is called (the in-process qmgr)."""
        self._listeners.append(callback)

    def remove_listener(self, callback):
        if callback in self._listeners:
            self._listeners.remove(callback)

    def notify(self):
        """Wake the queue manager: there is new mail in incoming/.

        The in-process one is called directly; in a process without one,
        the ``public/qmgr`` trigger is pulled (:mod:`mailstack.queue.trigger`).
        """
        if not self._listeners:
            if self._trigger is None:
                from mailstack.queue.trigger import QueueTrigger, trigger_path
                self._trigger = QueueTrigger(self.reactor, trigger_path(self.directory))
            self._trigger.pull()
        for callback in list(self._listeners):
            callback()

    def list(self, queue):
        """Return the queue ids in ``queue`` (complete files only), oldest name first."""
        try:
            names = os.listdir(self.path(queue))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if "." not in n)

    def locate(self, queue_id, queues=("incoming", "active", "deferred", "hold", "maildrop")):
        """Return the queue that holds ``queue_id``, or None."""
        for queue in queues:
            if os.path.exists(self.path(queue, queue_id)):
                return queue
        return None

    def move(self, queue_id, source, target, mtime=None):
        """Rename a message from one queue to another (synchronous, one rename).

        Returns:
            bool: False when the file was not in ``source`` any more.
        """
        try:
            os.rename(self.path(source, queue_id), self.path(target, queue_id))
        except FileNotFoundError:
            return False
        if mtime is not None:
            os.utime(self.path(target, queue_id), (mtime, mtime))
        return True

    def move_durably(self, queue_id, source, target, mtime=None):
        """:meth:`move` and fsync both directories, in a thread; returns a Deferred firing with bool."""
        def work():
            moved = self.move(queue_id, source, target, mtime)
            if moved:
                self.sync_directory(target)
                if source != target:
                    self.sync_directory(source)
            return moved
        return self.in_thread(work)

    def remove(self, queue_id, queue):
        """Delete a message and its logs (synchronous). Returns False when it was not there."""
        try:
            os.unlink(self.path(queue, queue_id))
        except FileNotFoundError:
            return False
        for name in LOGS:
            try:
                os.unlink(self.path(name, queue_id))
            except FileNotFoundError:
                pass
        return True


class QueueFileWriter:
    """A message being written; see the module docstring for the protocol.

    Attributes:
        queue_id: the message's queue id, assigned when the writer is created.
        size: content bytes written so far (as given, before line-end normalisation).
    """

    def __init__(self, queue, target="incoming", create=True):
        self._queue = queue
        self._target = target
        self.size = 0
        self._length = 0
        self._buffer = bytearray()
        self._pending_cr = False
        self._closed = False
        self._fd = None
        self.queue_id = new_queue_id()
        self._tmp = queue.path(target, self.queue_id + TMP_SUFFIX)
        if create:
            self._create()

    def _create(self):
        """Create the temporary file (``O_EXCL``; on a queue id collision another id is drawn) and write the header.

        Raises:
            QueueError: when the file cannot be created (nothing is left behind).
        """
        self._fd = self._open_exclusive()
        try:
            qfile.write_all(self._fd, qfile.header(0))
        except OSError as err:
            self.abort()
            raise QueueError("queue file write error: %s" % err.strerror) from err

    def _open_exclusive(self):
        for _ in range(10):
            try:
                return os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                self.queue_id = new_queue_id()
                self._tmp = self._queue.path(self._target, self.queue_id + TMP_SUFFIX)
            except OSError as err:
                self._closed = True
                raise QueueError("cannot create queue file: %s" % err.strerror) from err
        self._closed = True
        raise QueueError("cannot find a free queue id")

    def write(self, data):
        """Append content; CRLF line ends become LF on disk.

        Raises:
            QueueError: on a write error (the file is removed).
        """
        if self._closed:
            raise QueueError("queue file already closed")
        self.size += len(data)
        data = bytes(data)
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._pending_cr = True
        data = data.replace(b"\r\n", b"\n")
        self._buffer += data
        if len(self._buffer) >= _FLUSH_AT:
            self._flush()

    def _flush(self):
        if self._fd is None:
            self._create()
        try:
            qfile.write_all(self._fd, self._buffer)
        except OSError as err:
            self.abort()
            raise QueueError("queue file write error: %s" % err.strerror) from err
        self._length += len(self._buffer)
        self._buffer = bytearray()

    async def commit(self, envelope):
        """Write the envelope and make the message durable; return its queue id.

        The file and its directory are fsynced before this returns, through
        the process's :func:`~mailstack.util.aio.file_syncer` (native AIO,
        or the thread pool where AIO is not available).
        ``envelope.arrival_time`` is set to now when it is 0.

        Raises:
            QueueError: the message is not queued (and its file is removed).
        """
        if self._closed:
            raise QueueError("queue file already closed")
        if self._pending_cr:
            self._buffer += b"\r"
            self._pending_cr = False
        if not envelope.arrival_time:
            envelope.arrival_time = round(time.time(), 6)
        tail = bytes(self._buffer)
        self._buffer = bytearray()
        length = self._length + len(tail)
        await self._commit_async(self._queue.syncer, tail, length, envelope)
        if self._target == "incoming":
            self._queue.notify()
        return self.queue_id

    def _write_rest(self, fd, tail, length, envelope):
        """Write what is still in memory, the envelope and the final header (blocking, page cache only)."""
        if fd is None:
            # Nothing reached the disk before the end of data: the whole file in one write.
            fd = self._open_exclusive()
            try:
                qfile.write_all(fd, qfile.header(length) + tail + qfile.envelope_records(envelope))
            except BaseException:
                os.close(fd)
                raise
            return fd
        qfile.write_all(fd, tail + qfile.envelope_records(envelope))
        os.pwrite(fd, qfile.header(length), 0)
        return fd

    async def _commit_async(self, syncer, tail, length, envelope):
        """Write on the reactor thread (page cache only), then fsync the file, rename it, fsync the directory."""
        fd, self._fd, self._closed = self._fd, None, True
        final = None
        try:
            try:
                fd = self._write_rest(fd, tail, length, envelope)
            except OSError:
                if fd is not None:
                    os.close(fd)
                raise
            # Named only now: creating the file may have drawn another queue id.
            final = self._queue.path(self._target, self.queue_id)
            try:
                await syncer.fsync(fd)
            finally:
                os.close(fd)
            os.rename(self._tmp, final)
            await syncer.sync_directory(self._queue.path(self._target))
        except OSError as err:
            _unlink(self._tmp)
            if final is not None:
                _unlink(final)
            raise QueueError("queue file write error: %s" % err.strerror) from err

    def abort(self):
        """Forget the message: close and remove the temporary file."""
        if self._closed:
            return
        self._closed = True
        if self._fd is None:
            return
        try:
            os.close(self._fd)
        except OSError:
            pass
        self._fd = None
        _unlink(self._tmp)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def mail_queue(ctx):
    """Return the process-wide :class:`MailQueue` of a server context."""
    config = ctx.config
    return ctx.shared("queue", lambda: MailQueue(config["queue_directory"], ctx.reactor,
                                                  hostname=config["myhostname"]))
