# -*- test-case-name: tests.queue.test_pickup -*-
"""The ``pickup`` master.cf program: move mail from ``maildrop/`` into the queue.

``mailstack sendmail`` (and ``postdrop`` semantics) write complete queue
files into ``maildrop/`` (``ID.tmp``, fsync, rename, fsync directory),
which works while no server runs.  Pickup scans ``maildrop/`` at start and
every ``qmgr_scan_interval``, checks each file, logs Postfix's
``QUEUEID: uid=UID from=<sender>`` and renames it into ``incoming/`` (the
queue id stays the same), then wakes the queue manager.  A damaged file
goes to ``corrupt/``.

Parameters read: ``queue_directory``, ``qmgr_scan_interval``.
"""

import os

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger

from mailstack.queue import qfile
from mailstack.queue.store import fsync_directory, mail_queue

log = Logger(namespace="mailstack.pickup")


class Pickup:
    """Scan maildrop/ of ``queue`` once per :meth:`scan` call."""

    def __init__(self, queue):
        self.queue = queue

    def scan(self):
        """Move every complete maildrop file into incoming/; return how many moved.  Blocks briefly."""
        moved = 0
        for queue_id in self.queue.list("maildrop"):
            path = self.queue.path("maildrop", queue_id)
            try:
                qf = qfile.read(path)
                uid = os.stat(path).st_uid
            except qfile.CorruptQueueFile as err:
                self.queue.move(queue_id, "maildrop", "corrupt")
                log.warn("{queue_id}: {error}: moved to the corrupt queue", queue_id=queue_id, error=err)
                continue
            except OSError:
                continue
            if self.queue.move(queue_id, "maildrop", "incoming"):
                log.info("{queue_id}: uid={uid} from=<{sender}>", queue_id=queue_id, uid=uid,
                         sender=qf.envelope.sender)
                moved += 1
        if moved:
            fsync_directory(self.queue.path("incoming"))
            self.queue.notify()
        return moved


class PickupService(service.Service):
    def __init__(self, ctx, config):
        self.ctx = ctx
        self.config = config
        self._loop = None

    def startService(self):
        super().startService()
        pickup = Pickup(mail_queue(self.ctx))

        def tick():
            try:
                pickup.scan()
            except Exception:
                log.failure("maildrop scan failed")
        self._loop = task.LoopingCall(tick)
        self._loop.clock = self.ctx.reactor
        self._loop.start(self.config["qmgr_scan_interval"], now=True).addErrback(
            lambda f: log.failure("pickup failed", f))

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()


def make_service(ctx, entry, config):
    """The master.cf ``pickup`` program."""
    return PickupService(ctx, config)
