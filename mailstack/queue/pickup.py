# -*- test-case-name: tests.queue.test_pickup -*-
"""The ``pickup`` master.cf program: feed mail from ``maildrop/`` through cleanup into the queue.

``mailstack sendmail`` (postdrop semantics) writes complete queue files
into ``maildrop/`` (``ID.tmp``, fsync, rename, fsync directory), which works
while no server runs.  Pickup scans ``maildrop/`` at start and every
``qmgr_scan_interval`` and, as Postfix's pickup(8) hands each file to
cleanup(8), passes every message through :mod:`mailstack.cleanup`: the
envelope gets trivial-rewrite, canonical maps, masquerading, virtual
aliases and BCC maps like mail from SMTP does, the message gets a local
``Received: by HOST (mailstack, from userid UID)`` header and the missing
``Date:``/``Message-ID:``/``From:`` headers, and it is committed (fsynced)
into ``incoming/`` under a new queue id.  Only then is the maildrop file
removed, so a crash in between can duplicate a message but never lose
one.  Logs ``QUEUEID: uid=UID from=<sender>`` with the new queue id, as
Postfix does.  A damaged file goes to ``corrupt/``; a message cleanup
refuses for now (a table lookup failed) stays in ``maildrop/`` for the
next scan; one it refuses for good (``hopcount_limit``: a mail loop) goes
to ``hold/``, where ``mailq`` shows it and ``postsuper`` can delete or
release it.

Parameters read: ``queue_directory``, ``qmgr_scan_interval`` and cleanup's.
"""

import os

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from mailstack.common.reply import PermanentReject
from mailstack.queue import qfile
from mailstack.queue.envelope import Recipient
from mailstack.queue.store import mail_queue

log = Logger(namespace="mailstack.pickup")


def _read(path):
    """Read a maildrop file in a thread: (QueueFile, content, owner uid)."""
    qf = qfile.read(path)
    return qf, qf.read_content(), os.stat(path).st_uid


class Pickup:
    """Move maildrop/ files of ``queue`` through ``cleanup`` (a :class:`~mailstack.cleanup.Cleanup`)."""

    def __init__(self, queue, cleanup):
        self.queue = queue
        self.cleanup = cleanup

    async def scan(self):
        """Queue every complete maildrop file; return how many were queued."""
        queue = self.queue
        moved = 0
        for drop_id in await queue.in_thread(queue.list, "maildrop"):
            path = queue.path("maildrop", drop_id)
            try:
                qf, content, uid = await queue.in_thread(_read, path)
            except qfile.CorruptQueueFile as err:
                await queue.move_durably(drop_id, "maildrop", "corrupt")
                log.warn("{queue_id}: {error}: moved to the corrupt queue", queue_id=drop_id, error=err)
                continue
            except OSError:
                continue  # taken meanwhile (a second pickup), or not readable yet
            outcome = await self._submit(drop_id, qf, content, uid)
            if outcome == "queued":
                await queue.in_thread(queue.remove, drop_id, "maildrop")
                moved += 1
            elif outcome == "refused":
                await queue.move_durably(drop_id, "maildrop", "hold")
        if moved:
            queue.notify()
        return moved

    async def _submit(self, drop_id, qf, content, uid):
        envelope = qf.envelope
        envelope.recipients = [Recipient(r.recipient.address, r.recipient.original, r.recipient.orcpt,
                                         r.recipient.notify) for r in qf.pending()]
        envelope.client_address, envelope.client_name = "", "localhost"
        envelope.protocol = "local"
        writer = self.cleanup.open_writer()
        writer.begin_local(envelope, uid)
        try:
            writer.write(content)
            queue_id = await writer.finish(envelope)
        except PermanentReject as err:
            # Nobody is connected to hear a 5xx: keep the message where postqueue/postsuper show it.
            log.warn("{queue_id}: cleanup refused it ({error}): moved to the hold queue", queue_id=drop_id,
                     error=err.text)
            return "refused"
        except Exception as err:  # a TemporaryReject (lookup failure) or QueueError: keep the file
            log.warn("{queue_id}: cannot queue: {error}; trying again later", queue_id=drop_id,
                     error=getattr(err, "text", None) or err)
            return "later"
        log.info("{queue_id}: uid={uid} from=<{sender}>", queue_id=queue_id, uid=uid, sender=envelope.sender)
        return "queued"


class PickupService(service.Service):
    def __init__(self, ctx, config, cleanup):
        self.ctx = ctx
        self.config = config
        self._pickup = Pickup(mail_queue(ctx), cleanup)
        self._loop = None
        self._running = None

    def startService(self):
        super().startService()

        def tick():
            if self._running is not None:
                return None  # the previous scan is still working through a big maildrop
            self._running = defer.ensureDeferred(self._pickup.scan())
            self._running.addErrback(lambda f: log.failure("maildrop scan failed", f))
            self._running.addBoth(lambda _: setattr(self, "_running", None))
            return None
        self._loop = task.LoopingCall(tick)
        self._loop.clock = self.ctx.reactor
        self._loop.start(self.config["qmgr_scan_interval"], now=True).addErrback(
            lambda f: log.failure("pickup failed", f))

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return self._running


def make_service(ctx, entry, config):
    """The master.cf ``pickup`` program."""
    from mailstack.cleanup import Cleanup
    from mailstack.tables.registry import tables_for
    cleanup = Cleanup(config, mail_queue(ctx), tables_for(ctx), ctx.reactor)
    return PickupService(ctx, config, cleanup)
