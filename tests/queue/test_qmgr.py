"""The queue manager: activation, scheduling, deferral and backoff, lifetimes, recovery (clock-driven)."""

import os
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from mailstack.agents.base import DeliveryStatus
from mailstack.agents.simple import DiscardAgent, ErrorAgent
from mailstack.queue import Envelope, MailQueue, Recipient, qfile
from mailstack.queue.qmgr import QueueManager, format_delay, read_defer_log
from tests.queue.harness import Harness, LogCapture, wait_until


@pytest.fixture
def logs():
    """Maillog lines emitted during the test."""
    capture = LogCapture().start()
    yield capture
    capture.stop()


def _harness(tmp_path, extra=""):
    return Harness(tmp_path, extra, {"discard": DiscardAgent(), "error": ErrorAgent()})


class RecordingAgent:
    """An agent that delivers after the test releases it, recording concurrency and batch sizes."""

    name = "recording"

    def __init__(self):
        self.running = 0
        self.peak = 0
        self.batches = []
        self.waiting = []

    async def deliver(self, request):
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.batches.append([r.address for r in request.recipients])
        gate = defer.Deferred()
        self.waiting.append(gate)
        await gate
        self.running -= 1
        return [DeliveryStatus.sent(r, "delivered", "test") for r in request.recipients]

    def release_all(self):
        gates, self.waiting = self.waiting, []
        for gate in gates:
            gate.callback(None)


def _retried(h, path):
    """True once a deferred message was tried again: it is back in deferred/ with a future retry time."""
    try:
        return os.stat(path).st_mtime > h.clock.seconds() and not h.qmgr.active
    except FileNotFoundError:
        return False


def test_format_delay_matches_postfix():
    """Delays print like Postfix: 0, two decimals below 1s, one below 10s, whole seconds above."""
    assert [format_delay(x) for x in (0.001, 0.123, 1.25, 372.4)] == ["0", "0.12", "1.2", "372"]


@pytest_twisted.ensureDeferred
async def test_delivered_message_is_logged_and_removed(tmp_path, logs):
    """A message to a transport that succeeds is logged from=/status=sent/removed and leaves the queue."""
    h = _harness(tmp_path, "default_transport = discard:discarded\n")
    h.qmgr.start()
    queue_id = await h.submit("alice@example.org", ["bob@remote.test"])
    await h.settle()
    await h.qmgr.stop()
    assert h.queue.list("active") == [] and h.queue.list("deferred") == []
    assert logs.matching("%s: from=<alice@example.org>, size=21, nrcpt=1 (queue active)" % queue_id)
    sent = logs.matching("%s: to=<bob@remote.test>, relay=none, delay=" % queue_id)
    assert sent and "dsn=2.0.0, status=sent (discarded)" in sent[0]
    assert "mailstack/discard[1]" in sent[0]
    assert logs.matching("%s: removed" % queue_id)


@pytest_twisted.ensureDeferred
async def test_deferral_backs_off_exponentially_between_limits(tmp_path, logs):
    """A failing message is retried after min backoff, then after its age, capped at maximal_backoff_time."""
    h = _harness(tmp_path, "default_transport = error:4.4.1 host unreachable\nqueue_run_delay = 100s\n")
    h.qmgr.start()
    queue_id = await h.submit("alice@example.org", ["bob@remote.test"])
    await h.settle()
    path = h.queue.path("deferred", queue_id)
    assert os.path.exists(path)
    arrival = qfile.read(path).envelope.arrival_time
    assert read_defer_log(h.queue, queue_id) == {"bob@remote.test": ("4.4.1", "host unreachable")}
    intervals = []
    for _ in range(7):
        h.advance(max(0, os.stat(path).st_mtime - h.clock.seconds()) + 100)
        await wait_until(lambda: _retried(h, path), h.clock)
        now = h.clock.seconds()
        expected = min(max(now - arrival, 300), 4000)
        intervals.append(round(os.stat(path).st_mtime - now))
        assert abs((os.stat(path).st_mtime - now) - expected) < 1
    # The interval grows with the message's age (doubling per attempt) and stops at the maximum.
    assert intervals == sorted(intervals) and intervals[0] >= 300 and intervals[-1] == 4000
    assert len(logs.matching("status=deferred (host unreachable)")) == 8
    await h.qmgr.stop()


@pytest_twisted.ensureDeferred
async def test_expired_message_returns_to_sender(tmp_path, logs):
    """After maximal_queue_lifetime a deferred message is bounced with its last reason, then removed."""
    h = _harness(tmp_path, "transport_maps =\ndefault_transport = error:4.4.1 host unreachable\n"
                           "maximal_queue_lifetime = 1h\nqueue_run_delay = 60s\n")
    h.qmgr.start()
    queue_id = await h.submit("alice@mail.example.test", ["bob@remote.test"])
    await h.settle()
    h.advance(3700)
    await wait_until(lambda: logs.matching("%s: removed" % queue_id), h.clock)
    assert logs.matching("%s: from=<alice@mail.example.test>, status=expired, returned to sender" % queue_id)
    notice = logs.matching("%s: sender non-delivery notification: " % queue_id)
    assert notice
    bounce_id = notice[0].rsplit(" ", 1)[1]
    await h.qmgr.stop()
    where = h.queue.locate(bounce_id)
    qf = qfile.read(h.queue.path(where, bounce_id))
    assert qf.envelope.sender == ""
    assert [r.recipient.address for r in qf.recipients] == ["alice@mail.example.test"]
    text = qf.read_content().decode()
    assert "Content-Type: multipart/report; report-type=delivery-status" in text
    assert "Final-Recipient: rfc822; bob@remote.test" in text and "Status: 4.4.1" in text
    assert "Action: failed" in text


@pytest_twisted.ensureDeferred
async def test_permanent_failure_bounces_and_null_sender_gets_none(tmp_path, logs):
    """A 5xx failure bounces to the sender; the same failure for a null-sender message makes no bounce."""
    h = _harness(tmp_path, "default_transport = error:5.1.1 no such user\n")
    h.qmgr.start()
    first = await h.submit("alice@remote.test", ["bob@remote.test"])
    second = await h.submit("", ["carol@remote.test"])
    await wait_until(lambda: logs.matching("%s: removed" % first) and logs.matching("%s: removed" % second),
                     h.clock)
    await h.qmgr.stop()
    assert logs.matching("%s: to=<bob@remote.test>" % first)[0].endswith("dsn=5.1.1, status=bounced (no such user)")
    assert logs.matching("%s: sender non-delivery notification:" % first)
    assert not logs.matching("%s: sender non-delivery notification:" % second)
    assert logs.matching("%s: undeliverable bounce discarded" % second)


@pytest_twisted.ensureDeferred
async def test_double_bounce_goes_to_postmaster_with_2bounce(tmp_path, logs):
    """With notify_classes = 2bounce an undeliverable bounce goes to the postmaster from double-bounce."""
    h = _harness(tmp_path, "default_transport = error:5.1.1 no such user\nnotify_classes = 2bounce\n"
                           "local_transport = discard\n")
    h.qmgr.start()
    queue_id = await h.submit("", ["carol@remote.test"])
    await wait_until(lambda: logs.matching("%s: postmaster non-delivery notification:" % queue_id), h.clock)
    await h.settle()
    await h.qmgr.stop()
    notice_id = logs.matching("%s: postmaster non-delivery notification:" % queue_id)[0].rsplit(" ", 1)[1]
    assert logs.matching("%s: from=<double-bounce@mail.example.test>" % notice_id)
    assert logs.matching("%s: to=<postmaster@mail.example.test>" % notice_id)


@pytest_twisted.ensureDeferred
async def test_crash_recovery_takes_active_mail_back(tmp_path, logs):
    """Mail left in active/ by a dead queue manager is delivered after restart; done recipients are skipped."""
    h = _harness(tmp_path, "default_transport = discard:discarded\n")
    queue_id = await h.submit("alice@example.org", ["one@remote.test", "two@remote.test"])
    h.queue.move(queue_id, "incoming", "active")
    path = h.queue.path("active", queue_id)
    qfile.mark_done(path, [qfile.read(path).recipients[0].offset])
    h.qmgr.start()
    await h.settle()
    await h.qmgr.stop()
    assert logs.matching("%s: recovered from active queue" % queue_id)
    assert logs.matching("nrcpt=1 (queue active)")
    assert not logs.matching("to=<one@remote.test>")
    assert logs.matching("to=<two@remote.test>")
    assert h.queue.list("active") == []


@pytest_twisted.ensureDeferred
async def test_concurrency_window_and_recipient_limit(tmp_path):
    """Requests carry at most the recipient limit; a destination runs at most its window at once."""
    agent = RecordingAgent()
    h = Harness(tmp_path, "default_transport = recording\ndefault_destination_recipient_limit = 2\n"
                          "initial_destination_concurrency = 2\ndefault_destination_concurrency_limit = 3\n",
                {"recording": agent})
    h.qmgr.start()
    await h.submit("a@example.org", ["r%d@remote.test" % i for i in range(5)])
    await wait_until(lambda: len(agent.waiting) == 2, h.clock)
    assert agent.peak == 2                     # initial window
    agent.release_all()
    await wait_until(lambda: len(agent.batches) == 3, h.clock)
    assert sorted(len(b) for b in agent.batches) == [1, 2, 2]
    agent.release_all()
    for _ in range(4):
        await h.submit("a@example.org", ["x@remote.test", "y@remote.test"])
    await wait_until(lambda: len(agent.waiting) == 3, h.clock)
    assert agent.peak == 3                     # grew after successes, capped at the limit
    while agent.waiting or h.queue.list("incoming") or h.qmgr.active:
        agent.release_all()
        await wait_until(lambda: agent.waiting or not h.qmgr.active, h.clock)
    await h.qmgr.stop()


@pytest_twisted.ensureDeferred
async def test_active_limit_prefers_new_mail(tmp_path):
    """With one active slot, new mail is activated before due deferred mail."""
    agent = RecordingAgent()
    h = Harness(tmp_path, "default_transport = recording\nqmgr_message_active_limit = 1\n"
                          "transport_maps =\n", {"recording": agent})
    old = await h.submit("a@example.org", ["old@remote.test"])
    h.queue.move(old, "incoming", "deferred", mtime=h.clock.seconds() - 10)
    new = await h.submit("a@example.org", ["new@remote.test"])
    h.qmgr.start()
    await wait_until(lambda: len(agent.waiting) == 1, h.clock)
    assert list(h.qmgr.active) == [new]
    agent.release_all()
    await wait_until(lambda: len(agent.batches) == 2, h.clock)
    assert agent.batches == [["new@remote.test"], ["old@remote.test"]]
    agent.release_all()
    await h.settle()
    await h.qmgr.stop()


@pytest_twisted.ensureDeferred
async def test_defer_transports_hold_mail_until_flush(tmp_path, logs):
    """A transport in defer_transports delivers nothing until the queue is flushed."""
    h = _harness(tmp_path, "default_transport = discard:discarded\ndefer_transports = discard\n")
    h.qmgr.start()
    queue_id = await h.submit("a@example.org", ["b@remote.test"])
    await h.settle()
    assert h.queue.list("deferred") == [queue_id]
    assert logs.matching("status=deferred (deferred transport)")
    os.makedirs(h.queue.path("public"), exist_ok=True)
    open(h.queue.path("public", "flush-ALL"), "w").close()
    h.advance(1)
    await wait_until(lambda: logs.matching("%s: removed" % queue_id), h.clock)
    assert logs.matching("status=sent (discarded)")
    await h.qmgr.stop()


@pytest_twisted.ensureDeferred
async def test_corrupt_file_goes_to_corrupt_queue(tmp_path, logs):
    """A damaged queue file is moved to corrupt/ and logged, and the queue goes on."""
    h = _harness(tmp_path, "default_transport = discard:discarded\n")
    with open(h.queue.path("incoming", "4BADBADBADBADBADBA"), "wb") as handle:
        handle.write(b"garbage")
    h.qmgr.start()
    await h.settle()
    await h.qmgr.stop()
    assert h.queue.list("corrupt") == ["4BADBADBADBADBADBA"]
    assert logs.matching("warning: 4BADBADBADBADBADBA:")


@pytest_twisted.ensureDeferred
async def test_delay_warning_sent_once(tmp_path, logs):
    """After delay_warning_time the sender gets one delay notice, recorded in the queue file."""
    h = _harness(tmp_path, "default_transport = error:4.4.1 host unreachable\ndelay_warning_time = 1h\n"
                           "queue_run_delay = 60s\n")
    h.qmgr.start()
    queue_id = await h.submit("alice@remote.test", ["bob@remote.test"])
    await h.settle()
    for _ in range(3):
        path = h.queue.path("deferred", queue_id)
        h.advance(max(0, os.stat(path).st_mtime - h.clock.seconds()) + 1800)
        await wait_until(lambda: _retried(h, path), h.clock)
    await h.qmgr.stop()
    assert len(logs.matching("%s: sender delay notification:" % queue_id)) == 1
    assert qfile.read(h.queue.path("deferred", queue_id)).warning_time > 0


@pytest_twisted.ensureDeferred
async def test_stop_leaves_untried_mail_in_active_for_recovery(tmp_path, logs):
    """Stopping waits for deliveries under way; requests not started stay in active/ and are delivered after restart."""
    agent = RecordingAgent()
    h = Harness(tmp_path, "default_transport = recording\ninitial_destination_concurrency = 1\n"
                          "default_destination_concurrency_limit = 1\n", {"recording": agent})
    h.qmgr.start()
    first = await h.submit("a@example.org", ["one@remote.test"])
    second = await h.submit("a@example.org", ["two@remote.test"])
    await wait_until(lambda: len(agent.waiting) == 1 and len(h.qmgr.active) == 2, h.clock)
    stopped = h.qmgr.stop()
    assert not stopped.called
    agent.release_all()
    await stopped
    assert logs.matching("%s: removed" % first)
    assert h.queue.list("active") == [second]
    restarted = Harness(tmp_path, "default_transport = recording\n", {"recording": agent})
    restarted.qmgr.start()
    await wait_until(lambda: len(agent.waiting) == 1, restarted.clock)
    agent.release_all()
    await wait_until(lambda: logs.matching("%s: removed" % second), restarted.clock)
    await restarted.qmgr.stop()
    assert agent.batches == [["one@remote.test"], ["two@remote.test"]]


@pytest_twisted.ensureDeferred
async def test_success_notice_for_notify_success(tmp_path, logs):
    """NOTIFY=SUCCESS makes a 'delivered' DSN for the sender; the default makes none."""
    from mailstack.queue.envelope import Recipient
    h = _harness(tmp_path, "default_transport = discard:discarded\n")
    h.qmgr.start()
    queue_id = await h.submit("alice@mail.example.test", [Recipient("b@remote.test", notify=("SUCCESS",)),
                                                          Recipient("c@remote.test")], envid="E-42")
    await wait_until(lambda: logs.matching("%s: removed" % queue_id), h.clock)
    notices = logs.matching("%s: sender delivery status notification:" % queue_id)
    assert len(notices) == 1
    notice_id = notices[0].rsplit(" ", 1)[1]
    await h.settle()
    await h.qmgr.stop()
    assert logs.matching("%s: from=<>" % notice_id)
    # The local transport is not part of this harness: the notice waits in deferred/.
    text = qfile.read(h.queue.path("deferred", notice_id)).read_content().decode()
    assert "Subject: Successful Mail Delivery Report" in text and "Original-Envelope-Id: E-42" in text
    assert "Final-Recipient: rfc822; b@remote.test\n" in text and "Action: delivered" in text
    assert "c@remote.test" not in text


@pytest_twisted.ensureDeferred
async def test_local_concurrency_limit_is_per_recipient(tmp_path):
    """With local_destination_recipient_limit = 1 the local concurrency limit applies per recipient, as in Postfix."""
    agent = RecordingAgent()
    h = Harness(tmp_path, "local_destination_concurrency_limit = 1\n", {"local": agent})
    h.qmgr.start()
    await h.submit("s@remote.test", ["a@localhost", "b@localhost"])
    await h.submit("s@remote.test", ["a@localhost"])
    await wait_until(lambda: len(agent.waiting) == 2 and not h.queue.list("incoming"), h.clock)
    assert sorted(b[0] for b in agent.batches) == ["a@localhost", "b@localhost"]
    while agent.waiting or h.qmgr.active:
        agent.release_all()
        await wait_until(lambda: agent.waiting or not h.qmgr.active, h.clock)
    assert len(agent.batches) == 3 and agent.peak == 2
    await h.qmgr.stop()
    assert h.qmgr.destinations == {}


@pytest_twisted.ensureDeferred
async def test_hold_transport_puts_message_on_hold(tmp_path, logs):
    """A recipient resolved to the hold transport moves the whole message to hold/."""
    h = _harness(tmp_path, "default_transport = hold\n")
    h.qmgr.start()
    queue_id = await h.submit("a@example.org", ["b@remote.test"])
    await h.settle()
    await h.qmgr.stop()
    assert h.queue.list("hold") == [queue_id]
    assert logs.matching("%s: hold: " % queue_id)


@pytest_twisted.ensureDeferred
async def test_removals_of_messages_finishing_together_share_thread_jobs(tmp_path, logs):
    """Twelve messages delivered at once leave active/ in fewer removal jobs than messages, each logged removed."""
    agent = RecordingAgent()
    h = Harness(tmp_path, "default_transport = recording\ninitial_destination_concurrency = 20\n"
                          "default_destination_concurrency_limit = 20\n", {"recording": agent})
    jobs = []
    in_thread = h.queue.in_thread

    def counting(function, *args):
        if "_start_removals" in function.__qualname__:
            jobs.append(list(args[0]))
        return in_thread(function, *args)
    h.queue.in_thread = counting
    h.qmgr.start()
    ids = [await h.submit("a@example.org", ["r%d@remote.test" % i]) for i in range(12)]
    await wait_until(lambda: len(agent.waiting) == 12, h.clock)
    agent.release_all()
    await wait_until(lambda: not h.qmgr.active, h.clock)
    await h.qmgr.stop()
    assert h.queue.list("active") == [] and sorted(q for job in jobs for q in job) == sorted(ids)
    assert 1 <= len(jobs) < 12
    assert all(logs.matching("%s: removed" % queue_id) for queue_id in ids)


@pytest_twisted.ensureDeferred
async def test_free_slots_take_waiting_mail_and_other_processes_mail_waits_for_the_scan(tmp_path):
    """Mail left for lack of room is taken as slots free; mail of another process waits for the scan timer."""
    agent = RecordingAgent()
    h = Harness(tmp_path, "default_transport = recording\nqmgr_message_active_limit = 2\n"
                          "transport_maps =\nqmgr_scan_interval = 60s\n", {"recording": agent})
    for name in ("one", "two", "three"):
        await h.submit("a@example.org", ["%s@remote.test" % name])
    h.qmgr.start()
    await wait_until(lambda: len(agent.waiting) == 2, h.clock)
    agent.release_all()  # "three", left behind by the first scan, takes a freed slot
    await wait_until(lambda: len(agent.waiting) == 1, h.clock)
    assert agent.batches == [["one@remote.test"], ["two@remote.test"], ["three@remote.test"]]

    def quiet():  # no scan running or asked for
        wake = h.qmgr._wake_call
        return not h.qmgr._filling and not (wake is not None and wake.active())
    await wait_until(quiet, h.clock)
    # Another process queues mail (no in-process notify): finishing "three" does not scan for it ...
    other = MailQueue(h.queue.directory, reactor)
    writer = other.new_message()
    writer.write(b"Subject: other\n\nhi\n")
    queued = await writer.commit(Envelope("a@example.org", [Recipient("four@remote.test")]))
    agent.release_all()
    await wait_until(lambda: not h.qmgr.active, h.clock)
    for _ in range(3):
        h.clock.advance(0)
        await task.deferLater(reactor, 0.01, lambda: None)
    assert h.queue.list("incoming") == [queued] and len(agent.batches) == 3
    h.clock.advance(60)  # ... the periodic scan finds it
    await wait_until(lambda: len(agent.waiting) == 1, h.clock)
    assert agent.batches[-1] == ["four@remote.test"]
    agent.release_all()
    await h.settle()
    await h.qmgr.stop()


@pytest_twisted.ensureDeferred
async def test_wakeups_wait_for_qmgr_scan_spacing(tmp_path, logs):
    """New mail within qmgr_scan_spacing of the last scan waits for the spacing, then one scan takes it all."""
    h = _harness(tmp_path, "default_transport = discard:x\nqmgr_scan_spacing = 1s\n")
    h.qmgr.start()
    h.clock.advance(0)  # the first scan runs at once
    await wait_until(lambda: not h.qmgr._filling, h.clock)
    queued = sorted([await h.submit("a@example.org", ["b@remote.test"]) for _ in range(2)])
    for _ in range(5):
        h.clock.advance(0.1)  # half the spacing in all: still waiting
        await task.deferLater(reactor, 0.01, lambda: None)
    assert h.queue.list("incoming") == queued
    h.clock.advance(1)
    await h.settle()
    await h.qmgr.stop()
    assert [q for q in queued if logs.matching("%s: removed" % q)] == queued


class _GatedQueue(MailQueue):
    """A real MailQueue whose listing of incoming/ (in the scan's thread job) waits for the test."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def list(self, queue):
        if queue == "incoming":
            self.gate.wait(10)
        return super().list(queue)


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_a_scan_under_way(tmp_path):
    """stop() during a scan returns after it; what the scan claimed stays in active/ untried, for recovery."""
    agent = RecordingAgent()
    h = Harness(tmp_path, "default_transport = recording\ntransport_maps =\n", {"recording": agent})
    queue = _GatedQueue(h.queue.directory, reactor, hostname="mail.example.test")
    queued = await h.submit("a@example.org", ["b@remote.test"])
    qmgr = QueueManager(queue, h.config, h.agents, h.resolver, h.bouncer, h.clock)
    qmgr.start()
    h.clock.advance(0)
    await wait_until(lambda: qmgr._filling, h.clock)
    stopped = qmgr.stop()
    assert not stopped.called
    queue.gate.set()
    await stopped
    assert queue.list("active") == [queued] and agent.batches == []
