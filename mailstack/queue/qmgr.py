# -*- test-case-name: tests.queue.test_qmgr -*-
"""The queue manager: from incoming/ through the delivery agents to done.

Postfix's qmgr(8), in one reactor:

* **Activation.**  New mail is taken from ``incoming/`` (woken at once by
  :meth:`MailQueue.notify` in this process, and every
  ``qmgr_scan_interval`` for mail queued by other processes) and deferred
  mail whose retry time (the file's mtime) has come from ``deferred/``
  every ``queue_run_delay``.  At most ``qmgr_message_active_limit``
  messages are active; incoming mail always fills free slots first, so new
  mail is preferred over deferred mail under load, and deferred mail that
  found no slot stays due for the next free one.  One thread job lists
  incoming/ and claims what fits; a message that finishes wakes a new scan
  only when the last one left mail behind for lack of room (new mail wakes
  the queue manager by itself), so that delivering costs no directory scan
  per message, and wake-ups are at least ``qmgr_scan_spacing`` apart, so
  that a stream of new mail costs a scan per few messages, not per message.  A message is activated by
  ``rename`` into ``active/`` (whoever renames first owns it) and logged
  ``QUEUEID: from=<s>, size=N, nrcpt=M (queue active)``.
* **Resolution and scheduling.**  Each pending recipient is resolved
  (:mod:`mailstack.rewrite.resolve`) and grouped per destination
  (transport, next hop) into requests of at most
  ``default_destination_recipient_limit`` recipients
  (``local_destination_recipient_limit`` for local; with a limit of 1 the
  destination is the recipient itself, as in Postfix).  A destination runs
  at most *window* requests at once: the window starts at
  ``initial_destination_concurrency``, grows by one after each request
  that delivered something (slow start) up to
  ``default_destination_concurrency_limit``
  (``local_destination_concurrency_limit`` for local) and shrinks by one
  after a request that only deferred.  Recipients of ``defer_transports``
  are deferred without an attempt unless the queue was flushed.
* **Outcome.**  Each status is logged by the agent's name
  (``mailstack/local: ID: to=<...>, relay=local, delay=..., status=sent``).
  Delivered and bounced recipients are marked done in the queue file
  (after their bounce is queued).  When every request of a message has
  finished, the message is removed (``QUEUEID: removed``) or, if some
  recipients were deferred, its reasons go to ``defer/ID`` and it moves to
  ``deferred/`` with its mtime set to the next attempt: now plus its age,
  clamped to [``minimal_backoff_time``, ``maximal_backoff_time``]; the
  interval thus doubles with every attempt (Postfix ``qmgr_active.c``).
  A deferred message older than ``maximal_queue_lifetime``
  (``bounce_queue_lifetime`` for bounces) is returned to its sender when
  it next comes up (``status=expired, returned to sender``).  A delay
  warning goes out once after ``delay_warning_time``.
* **Crash recovery.**  At start, everything in ``active/`` goes back to
  ``incoming/`` (only recipients not marked done are tried again) and
  ``.tmp`` files older than an hour, left by writers that died, are removed.
* **Flush.**  :meth:`flush` (``postqueue -f``, ``sendmail -q``, also
  through ``public/flush-ALL`` or ``public/flush-ID`` trigger files that
  other processes create) makes deferred mail due now and lets
  ``defer_transports`` deliver.

Time comes from an injected clock (``seconds()``/``callLater``), so
backoff, lifetimes and warnings are tested with ``task.Clock``.

Parameters read: ``qmgr_message_active_limit``, ``qmgr_scan_interval``,
``queue_run_delay``, ``minimal_backoff_time``, ``maximal_backoff_time``,
``maximal_queue_lifetime``, ``bounce_queue_lifetime``,
``delay_warning_time``, ``default_destination_concurrency_limit``,
``local_destination_concurrency_limit``, ``initial_destination_concurrency``,
``default_destination_recipient_limit``, ``local_destination_recipient_limit``,
``defer_transports``, ``qmgr_scan_spacing``.
"""

import collections
import os
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import failure

from mailstack.agents.base import DeliveryRecipient, DeliveryRequest, DeliveryStatus
from mailstack.bounce.dsn import RecipientReport
from mailstack.queue import qfile
from mailstack.queue.store import QueueError

log = Logger(namespace="mailstack.qmgr")

PARAMS = ("qmgr_message_active_limit", "qmgr_scan_interval", "queue_run_delay", "minimal_backoff_time",
          "maximal_backoff_time", "maximal_queue_lifetime", "bounce_queue_lifetime", "delay_warning_time",
          "default_destination_concurrency_limit", "local_destination_concurrency_limit",
          "initial_destination_concurrency", "default_destination_recipient_limit",
          "local_destination_recipient_limit", "defer_transports", "qmgr_scan_spacing")

STALE_TMP_AGE = 3600
# Content up to this size is read with the envelope when a message is
# claimed (one read in the claim's thread job instead of a second job per
# message); bigger messages are read when first delivered.
_KEEP_CONTENT = 64 * 1024
TRIGGER_DIR = "public"


def format_delay(seconds):
    """Format a delay as Postfix does: ``0``, ``0.12``, ``1.5``, ``372``."""
    if seconds < 0.005:
        return "0"
    if seconds < 1:
        return ("%.2f" % seconds).rstrip("0").rstrip(".")
    if seconds < 10:
        return ("%.1f" % seconds).rstrip("0").rstrip(".")
    return "%d" % round(seconds)


def read_defer_log(queue, queue_id):
    """Return ``{recipient: (dsn, reason)}`` from ``defer/ID`` (empty when there is none)."""
    result = {}
    try:
        with open(queue.path("defer", queue_id), encoding="utf-8") as handle:
            for line in handle:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 3:
                    result[qfile.unescape(parts[0])] = (parts[1], qfile.unescape(parts[2]))
    except FileNotFoundError:
        pass
    return result


def write_defer_log(queue, queue_id, entries):
    """Write ``defer/ID``: one ``recipient TAB dsn TAB reason`` line per deferred recipient."""
    path = queue.path("defer", queue_id)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        for address, (dsn, reason) in entries.items():
            handle.write("%s\t%s\t%s\n" % (qfile.escape(address), dsn, qfile.escape(reason)))
    os.replace(path + ".tmp", path)


class _Message:
    """An active message and what has happened to it during this pass."""

    def __init__(self, queue, queue_id, qf, activated, flushed):
        self.queue = queue
        self.queue_id = queue_id
        self.qf = qf
        self.activated = activated
        self.flushed = flushed
        self.outstanding = 0
        self.abandoned = False      # stopping: untried recipients stay pending in active/
        self.statuses = []          # (QueuedRecipient, DeliveryStatus)
        self._content = qf.content

    async def content(self):
        """The message content, read once in a thread and kept while the message is active."""
        if self._content is None:
            self._content = await self.queue.in_thread(self.qf.read_content)
        return self._content


class _Destination:
    def __init__(self, key, window, limit):
        self.key = key
        self.window = window
        self.limit = limit
        self.busy = 0
        self.jobs = collections.deque()


class QueueManager:
    """Move mail through the queue and hand it to the delivery agents.

    Args:
        queue: the :class:`~mailstack.queue.MailQueue`.
        config: the main.cf configuration.
        agents: ``{transport name: agent}``; an agent has ``async deliver(request)``.
        resolver: a :class:`~mailstack.rewrite.resolve.Resolver`.
        bouncer: a :class:`~mailstack.bounce.notices.Bouncer`.
        clock: ``seconds()`` and ``callLater()``: the reactor, or a ``task.Clock`` in tests.
    """

    def __init__(self, queue, config, agents, resolver, bouncer, clock):
        self.queue = queue
        self.config = config
        self.agents = agents
        self.resolver = resolver
        self.bouncer = bouncer
        self.clock = clock
        self.active = {}
        self.destinations = {}
        self._running = False
        self._filling = False
        self._fill_again = False
        self._deferred_due = True
        self._flush_ids = set()
        self._flush_all = False
        self._timers = {}
        self._drained = None
        self._wake_call = None
        self._removals = []         # (queue_id, Deferred) waiting for the next removal job
        self._removing = False
        self._incoming_more = True  # the last scan of incoming/ left messages for lack of room
        self._last_scan = float("-inf")
        self._scan_waiters = []     # stop() waiting for the scan under way

    # -- life cycle ---------------------------------------------------------

    def start(self):
        """Recover active/ and stale temporary files, then start scanning."""
        self._running = True
        self.recover()
        self.queue.add_listener(self.wakeup)
        self._every("scan", self.config["qmgr_scan_interval"], self._scan_tick)
        self._every("deferred", self.config["queue_run_delay"], self._deferred_tick)
        self.wakeup()

    def stop(self, grace=10.0):
        """Stop taking new work; return a Deferred that fires when running deliveries have finished.

        Requests not yet started are dropped: their recipients stay pending
        in ``active/`` and are recovered at the next start.  The Deferred
        fires after ``grace`` seconds at the latest; deliveries still under
        way then are recovered (and possibly repeated) the same way.  A
        scan under way is waited for first (what it claims stays in
        ``active/`` for recovery, untried).
        """
        self._running = False
        self.queue.remove_listener(self.wakeup)
        for call in list(self._timers.values()) + [self._wake_call]:
            if call is not None and call.active():
                call.cancel()
        self._timers.clear()
        for destination in self.destinations.values():
            self._abandon(destination)
        if self._filling:
            scanned = defer.Deferred()
            self._scan_waiters.append(scanned)
            # A scan stuck on the disk does not hold the stop past the grace time.
            timer = self.clock.callLater(grace, lambda: None if scanned.called else scanned.callback(None))

            def scan_over(_):
                if timer.active():
                    timer.cancel()
                return self._drain(grace)
            return scanned.addCallback(scan_over)
        return self._drain(grace)

    def _drain(self, grace):
        if not self.active:
            return defer.succeed(None)
        self._drained = defer.Deferred()
        drained = self._drained
        timer = self.clock.callLater(grace, self._give_up, drained)
        drained.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return drained

    def _give_up(self, drained):
        if self._drained is drained:
            self._drained = None
            log.warn("{count} message(s) still being delivered at shutdown; they stay in the active queue",
                     count=len(self.active))
            drained.callback(None)

    def _abandon(self, destination):
        """Drop a destination's queued requests (shutdown); finish messages left with nothing running."""
        jobs, destination.jobs = destination.jobs, collections.deque()
        for msg, _, _ in jobs:
            msg.abandoned = True
            msg.outstanding -= 1
            if msg.outstanding == 0:
                defer.ensureDeferred(self._finish(msg)).addErrback(
                    lambda f: log.failure("shutdown bookkeeping failed", f))

    def recover(self):
        """Put messages left in active/ back into incoming/ and remove dead writers' temporary files."""
        for queue_id in self.queue.list("active"):
            if self.queue.move(queue_id, "active", "incoming"):
                log.info("{queue_id}: recovered from active queue", queue_id=queue_id)
        now = time.time()
        for queue in ("incoming", "maildrop"):
            directory = self.queue.path(queue)
            for name in os.listdir(directory):
                if name.endswith(".tmp"):
                    path = os.path.join(directory, name)
                    try:
                        if now - os.stat(path).st_mtime > STALE_TMP_AGE:
                            os.unlink(path)
                    except FileNotFoundError:
                        pass

    def _every(self, name, interval, function):
        def tick():
            if not self._running:
                return
            self._timers[name] = self.clock.callLater(interval, tick)
            function()
        self._timers[name] = self.clock.callLater(interval, tick)

    def _scan_tick(self):
        self._check_triggers()
        self.wakeup()

    def _deferred_tick(self):
        self._deferred_due = True
        self.wakeup()

    def wakeup(self):
        """Schedule a scan of the queues (soon, once)."""
        if not self._running:
            return
        if self._wake_call is None or not self._wake_call.active():
            # A wake-up right after a scan waits for the rest of
            # qmgr_scan_spacing: under a stream of new mail (a wake-up per
            # message) one scan then claims several messages, not one each.
            delay = max(0.0, self._last_scan + self.config["qmgr_scan_spacing"] - self.clock.seconds())
            self._wake_call = self.clock.callLater(delay, self._start_fill)

    def flush(self, queue_ids=None):
        """Make deferred mail (all, or ``queue_ids``) due now and exempt from ``defer_transports``."""
        if queue_ids is None:
            self._flush_all = True
            for queue_id in self.queue.list("incoming"):
                self._flush_ids.add(queue_id)
        else:
            self._flush_ids.update(queue_ids)
        self._deferred_due = True
        self.wakeup()

    def _check_triggers(self):
        directory = self.queue.path(TRIGGER_DIR)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        for name in names:
            if not name.startswith("flush-"):
                continue
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            target = name[len("flush-"):]
            self.flush(None if target == "ALL" else [target])

    # -- activation ---------------------------------------------------------

    def _start_fill(self):
        defer.ensureDeferred(self._fill()).addErrback(
            lambda f: log.failure("queue scan failed", f))

    async def _fill(self):
        if self._filling:
            self._fill_again = True
            return
        self._filling = True
        self._fill_again = False
        self._last_scan = self.clock.seconds()
        try:
            if self._running:
                await self._fill_once()
        finally:
            self._filling = False
            waiters, self._scan_waiters = self._scan_waiters, []
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(None)
        if self._fill_again:
            self.wakeup()  # woken during the scan: another one, spaced

    def _room(self):
        return self.config["qmgr_message_active_limit"] - len(self.active)

    async def _fill_once(self):
        # Directory scans, renames and reads run in the queue's threads (one
        # job per scan): on a busy disk they wait behind the fsyncs of
        # writers and deliveries.
        if self._room() > 0 and self._running:
            claimed, self._incoming_more = await self.queue.in_thread(
                self._claim_incoming, set(self.active), self._room())
            await self._start_claimed(claimed, "incoming")
        if not self._deferred_due or not self._running:
            return
        room = self._room()
        if room <= 0:
            return  # stays due: the next free slot continues the run
        flush_all = self._flush_all
        claimed, more = await self.queue.in_thread(self._claim_due, self.clock.seconds(), flush_all,
                                                   set(self._flush_ids), set(self.active), room)
        await self._start_claimed(claimed, "deferred")
        if not more:
            self._deferred_due = False
            if flush_all:
                self._flush_all = False

    def _claim_incoming(self, active, room):
        """List incoming/ and claim up to ``room`` messages.  Runs in a thread.

        Returns:
            ``(claimed, more)``: what :meth:`_claim` returns, and whether messages were left for lack of room.
        """
        names = [n for n in self.queue.list("incoming") if n not in active]
        return self._claim(names[:room], "incoming"), len(names) > room

    def _claim(self, names, source):
        """Move messages into active/ and read them.  Runs in a thread.

        Returns:
            list of ``(queue_id, QueueFile or None, error or None)``.
        """
        claimed = []
        for queue_id in names:
            if not self.queue.move(queue_id, source, "active"):
                continue  # another queue manager (or postsuper) took it
            try:
                claimed.append((queue_id, qfile.read(self.queue.path("active", queue_id), _KEEP_CONTENT), None))
            except qfile.CorruptQueueFile as err:
                self.queue.move(queue_id, "active", "corrupt")
                claimed.append((queue_id, None, err))
            except OSError:
                continue
        return claimed

    def _claim_due(self, now, flush_all, flush_ids, active, room):
        """Claim up to ``room`` deferred messages that are due or flushed.  Runs in a thread.

        Returns:
            ``(claimed, more)``: what :meth:`_claim` returns, and whether due messages were left over.
        """
        due = []
        for queue_id in self.queue.list("deferred"):
            if queue_id in active:
                continue
            try:
                ready = os.stat(self.queue.path("deferred", queue_id)).st_mtime <= now
            except FileNotFoundError:
                continue
            if ready or flush_all or queue_id in flush_ids:
                if len(due) == room:
                    return self._claim(due, "deferred"), True
                due.append(queue_id)
        return self._claim(due, "deferred"), False

    async def _start_claimed(self, claimed, source):
        for queue_id, qf, error in claimed:
            flushed = self._flush_all or queue_id in self._flush_ids
            self._flush_ids.discard(queue_id)
            if error is not None:
                log.warn("{queue_id}: {error}: moved to the corrupt queue", queue_id=queue_id, error=error)
                await self._problem("software", queue_id, "corrupt queue file moved to corrupt/: %s" % error)
                continue
            msg = self.active[queue_id] = _Message(self.queue, queue_id, qf, self.clock.seconds(), flushed)
            try:
                await self._schedule(msg, source)
            except Exception:
                log.failure("{queue_id}: scheduling failed", queue_id=queue_id)
                await self._requeue_after_error(msg)

    async def _schedule(self, msg, source):
        qf, queue_id = msg.qf, msg.queue_id
        pending = qf.pending()
        now = self.clock.seconds()
        log.info("{queue_id}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)",
                 queue_id=queue_id, sender=qf.envelope.sender, size=qf.content_length, nrcpt=len(pending))
        if not pending:
            await self._finish(msg)
            return
        lifetime = self.config["bounce_queue_lifetime" if not qf.envelope.sender else "maximal_queue_lifetime"]
        if source == "deferred" and now - qf.envelope.arrival_time >= lifetime:
            await self._expire(msg)
            return
        groups = collections.OrderedDict()
        deferred_transports = set(self.config["defer_transports"])
        for queued in pending:
            rcpt = queued.recipient
            try:
                resolution = await self.resolver.resolve(rcpt.address)
            except Exception as err:
                log.warn("{queue_id}: address resolver failure for {address}: {error}",
                         queue_id=queue_id, address=rcpt.address, error=err)
                msg.statuses.append((queued, DeliveryStatus(queued.index, "deferred", "4.3.0",
                                                            "address resolver failure", "none")))
                self._log_status(msg, queued, msg.statuses[-1][1], "qmgr", now, now)
                continue
            drcpt = DeliveryRecipient(queued.index, resolution.recipient, rcpt.original or "",
                                      rcpt.notify, rcpt.orcpt)
            if resolution.transport in deferred_transports and not msg.flushed:
                status = DeliveryStatus(queued.index, "deferred", "4.7.1", "deferred transport", "none")
                msg.statuses.append((queued, status))
                self._log_status(msg, queued, status, resolution.transport, now, now)
                continue
            groups.setdefault((resolution.transport, resolution.nexthop), []).append(drcpt)
        if any(transport == "hold" for transport, _ in groups):
            self.active.pop(queue_id, None)
            self.queue.move(queue_id, "active", "hold")
            log.info("{queue_id}: hold: recipient resolved to the hold transport", queue_id=queue_id)
            self._after_message()
            return
        by_index = {q.index: q for q in pending}
        jobs = []
        for (transport, nexthop), recipients in groups.items():
            limit = self._recipient_limit(transport)
            for start in range(0, len(recipients), limit):
                chunk = recipients[start:start + limit]
                # As Postfix: with a recipient limit of 1 the destination is the
                # recipient, so the concurrency limit applies per recipient.
                key = (transport, nexthop) if limit > 1 else (transport, nexthop, chunk[0].address.lower())
                jobs.append((key, DeliveryRequest(
                    queue_id, qf.envelope, transport, nexthop, chunk, msg.content, qf.content_length,
                    msg.flushed), [by_index[r.index] for r in chunk]))
        msg.outstanding = len(jobs)
        if not jobs:
            await self._finish(msg)
            return
        for key, request, queued in jobs:
            destination = self._destination(key)
            destination.jobs.append((msg, request, queued))
        for key, _, _ in jobs:
            self._dispatch(self.destinations[key])

    def _recipient_limit(self, transport):
        if transport == "local":
            return self.config["local_destination_recipient_limit"]
        return self.config["default_destination_recipient_limit"]

    def _destination(self, key):
        destination = self.destinations.get(key)
        if destination is None:
            limit = (self.config["local_destination_concurrency_limit"] if key[0] == "local"
                     else self.config["default_destination_concurrency_limit"])
            window = min(limit, self.config["initial_destination_concurrency"])
            destination = self.destinations[key] = _Destination(key, window, limit)
        return destination

    # -- delivery -----------------------------------------------------------

    def _dispatch(self, destination):
        if not self._running:
            self._abandon(destination)
            return
        while destination.jobs and destination.busy < destination.window:
            job = destination.jobs.popleft()
            destination.busy += 1
            defer.ensureDeferred(self._deliver(destination, *job)).addErrback(
                lambda f: log.failure("delivery bookkeeping failed", f))

    async def _deliver(self, destination, msg, request, queued):
        agent = self.agents.get(request.transport)
        started = self.clock.seconds()
        if agent is None:
            statuses = [DeliveryStatus(r.index, "deferred", "4.3.0",
                                       "mail transport unavailable", "none") for r in request.recipients]
            log.warn("{queue_id}: transport {transport} is not available", queue_id=msg.queue_id,
                     transport=request.transport)
        else:
            try:
                statuses = await agent.deliver(request)
            except Exception as err:
                log.failure("{queue_id}: {transport} delivery agent failed", queue_id=msg.queue_id,
                            transport=request.transport)
                statuses = [DeliveryStatus(r.index, "deferred", "4.3.0", "delivery agent failure: %s"
                                           % err.__class__.__name__, "none") for r in request.recipients]
                await self._problem("software", msg.queue_id, "%s delivery agent failed: %r"
                                    % (request.transport, err))
        ended = self.clock.seconds()
        by_index = {q.index: q for q in queued}
        seen = set()
        for status in statuses:
            if status.index in by_index and status.index not in seen:
                seen.add(status.index)
                msg.statuses.append((by_index[status.index], status))
                self._log_status(msg, by_index[status.index], status, request.transport, started, ended)
        for problem in sorted({s.problem for s in statuses if s.problem}):
            reasons = "; ".join(sorted({s.text for s in statuses if s.problem == problem}))
            await self._problem(problem, msg.queue_id, "%s delivery: %s" % (request.transport, reasons))
        for missing in set(by_index) - seen:  # an agent must answer for every recipient
            status = DeliveryStatus(missing, "deferred", "4.3.0", "no status from delivery agent", "none")
            msg.statuses.append((by_index[missing], status))
            self._log_status(msg, by_index[missing], status, request.transport, started, ended)
        destination.busy -= 1
        if any(s.action != "deferred" for s in statuses):
            destination.window = min(destination.limit, destination.window + 1)
        elif statuses:
            destination.window = max(1, destination.window - 1)
        msg.outstanding -= 1
        if len(destination.key) == 3 and not destination.busy and not destination.jobs:
            self.destinations.pop(destination.key, None)  # per-recipient destinations come and go
        if msg.outstanding == 0:
            await self._finish(msg)
        self._dispatch(destination)

    def _log_status(self, msg, queued, status, service, started, ended):
        arrival = msg.qf.envelope.arrival_time
        rcpt = queued.recipient
        orig = ""
        if rcpt.original and rcpt.original.lower() != rcpt.address.lower():
            orig = "orig_to=<%s>, " % rcpt.original
        delays = "/".join(format_delay(max(0.0, x)) for x in (
            msg.activated - arrival, started - msg.activated, 0.0, ended - started))
        text = "to=<%s>, %srelay=%s, delay=%s, delays=%s, dsn=%s, status=%s (%s)" % (
            rcpt.address, orig, status.relay, format_delay(max(0.0, ended - arrival)), delays,
            status.dsn, status.action, status.text)
        log.info("{queue_id}: {text}", queue_id=msg.queue_id, text=text, service=service)

    # -- completion ---------------------------------------------------------

    async def _finish(self, msg):
        qf, queue_id = msg.qf, msg.queue_id
        path = self.queue.path("active", queue_id)
        bounced = [(q, s) for q, s in msg.statuses if s.action == "bounced"]
        sent = [(q, s) for q, s in msg.statuses if s.action == "sent"]
        deferred = [(q, s) for q, s in msg.statuses if s.action == "deferred"]
        if bounced:
            try:
                await self.bouncer.notify("failure", queue_id, qf.envelope, self._reports(bounced),
                                          await msg.content())
            except QueueError as err:
                log.warn("{queue_id}: cannot queue bounce: {error}", queue_id=queue_id, error=err)
                deferred += [(q, DeliveryStatus(s.index, "deferred", s.dsn, "bounce failed: " + s.text, s.relay))
                             for q, s in bounced]
                bounced = []
        wanted = [(q, s) for q, s in sent if "SUCCESS" in q.recipient.notify]
        if wanted:
            try:
                await self.bouncer.notify("success", queue_id, qf.envelope, self._reports(wanted),
                                          await msg.content())
            except QueueError as err:
                log.warn("{queue_id}: cannot queue success notice: {error}", queue_id=queue_id, error=err)
        done = [q.offset for q, _ in sent + bounced]
        if msg.abandoned:
            # Shutdown: what was tried is recorded; the rest waits in active/ for recovery.
            if done:
                await self.queue.in_thread(qfile.mark_done, path, done)
        elif deferred:
            if done:
                await self.queue.in_thread(qfile.mark_done, path, done)
            await self._defer(msg, deferred)
        else:
            await self._remove(queue_id)
            log.info("{queue_id}: removed", queue_id=queue_id)
        self.active.pop(queue_id, None)
        self._after_message()

    def _remove(self, queue_id):
        """Delete a delivered message from active/ in a thread; return a Deferred.

        Removals batch themselves: while one thread job runs, messages that
        finish meanwhile wait for the next job, which removes them all (one
        job per batch instead of one per message).
        """
        waiter = defer.Deferred()
        self._removals.append((queue_id, waiter))
        if not self._removing:
            self._start_removals()
        return waiter

    def _start_removals(self):
        batch, self._removals = self._removals, []
        self._removing = True

        def work(queue_ids):
            results = []
            for queue_id in queue_ids:
                try:
                    results.append(self.queue.remove(queue_id, "active"))
                except Exception as err:  # reported to that message's waiter
                    results.append(err)
            return results

        def done(results):
            self._removing = False
            if self._removals:
                self._start_removals()
            if isinstance(results, failure.Failure):
                results = [results] * len(batch)
            for (_, waiter), result in zip(batch, results):
                if isinstance(result, (Exception, failure.Failure)):
                    waiter.errback(result)
                else:
                    waiter.callback(result)
        self.queue.in_thread(work, [queue_id for queue_id, _ in batch]).addBoth(done)

    def _reports(self, pairs):
        return [(q.recipient.notify, RecipientReport(q.recipient.address, q.recipient.orcpt or q.recipient.original,
                                                     s.dsn, s.text, s.relay, s.remote)) for q, s in pairs]

    async def _defer(self, msg, deferred):
        qf, queue_id = msg.qf, msg.queue_id
        now = self.clock.seconds()
        entries = {q.recipient.address: (s.dsn, s.text) for q, s in deferred}
        warning_time = self.config["delay_warning_time"]
        warned = None
        if (warning_time and not qf.warning_time and qf.envelope.sender
                and now - qf.envelope.arrival_time >= warning_time):
            try:
                await self.bouncer.notify("delay", queue_id, qf.envelope, self._reports(deferred),
                                          await msg.content())
                warned = now
            except QueueError as err:
                log.warn("{queue_id}: cannot queue delay warning: {error}", queue_id=queue_id, error=err)
        backoff = now - qf.envelope.arrival_time
        backoff = min(max(backoff, self.config["minimal_backoff_time"]), self.config["maximal_backoff_time"])

        def work():
            write_defer_log(self.queue, queue_id, entries)
            if warned is not None:
                qfile.set_warning_time(self.queue.path("active", queue_id), qf, warned)
            self.queue.move(queue_id, "active", "deferred", mtime=now + backoff)
            self.queue.sync_directory("deferred")
        try:
            await self.queue.in_thread(work)
        except FileNotFoundError:
            pass  # removed meanwhile (postsuper -d)

    async def _expire(self, msg):
        qf, queue_id = msg.qf, msg.queue_id
        reasons = read_defer_log(self.queue, queue_id)
        log.info("{queue_id}: from=<{sender}>, status=expired, returned to sender",
                 queue_id=queue_id, sender=qf.envelope.sender)
        for queued in qf.pending():
            dsn, text = reasons.get(queued.recipient.address, ("4.4.7", "message expired"))
            msg.statuses.append((queued, DeliveryStatus(queued.index, "bounced", dsn, text, "none")))
        await self._finish(msg)

    async def _requeue_after_error(self, msg):
        self.active.pop(msg.queue_id, None)
        now = self.clock.seconds()
        await self.queue.move_durably(msg.queue_id, "active", "deferred",
                                      mtime=now + self.config["minimal_backoff_time"])
        self._after_message()

    async def _problem(self, problem_class, queue_id, text):
        try:
            await self.bouncer.problem(problem_class, queue_id, text)
        except Exception:
            log.failure("{queue_id}: cannot notify the postmaster", queue_id=queue_id)

    def _after_message(self):
        if self._drained is not None and not self.active:
            drained, self._drained = self._drained, None
            drained.callback(None)
        elif self._running and (self._incoming_more or self._deferred_due):
            # A free slot matters only to mail the last scan left waiting;
            # new mail wakes the queue manager itself (notify, triggers, the
            # scan timer), so a finished message costs no directory scan.
            self.wakeup()
