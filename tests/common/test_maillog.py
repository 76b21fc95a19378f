"""Maillog formatting: syslog-shaped lines with the service tag, levels and tracebacks."""

import io
import re

from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from mailstack.common.maillog import MaillogObserver, format_line, service_tag

LINE_RE = re.compile(r"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d mail mailstack/(\S+)\[(\d+)\]: (.*)$")


def test_line_shape_and_service_from_namespace():
    """A mailstack.qmgr event logs as mailstack/qmgr[PID] in Postfix's shape."""
    out = io.StringIO()
    log = Logger(namespace="mailstack.qmgr.scheduler", observer=MaillogObserver(out, "mail.example.com"))
    log.info("{queue_id}: from=<{sender}>, size={size}, nrcpt={n} (queue active)",
             queue_id="3F2A9C", sender="a@example.com", size=812, n=1)
    match = LINE_RE.match(out.getvalue().rstrip("\n"))
    assert match, out.getvalue()
    assert match.group(1) == "qmgr"
    assert match.group(3) == "3F2A9C: from=<a@example.com>, size=812, nrcpt=1 (queue active)"


def test_service_key_overrides_namespace():
    """A protocol logs under its master.cf service name when it passes service=."""
    assert service_tag({"service": "submission", "log_namespace": "mailstack.smtpd"}) == "submission/smtpd"
    assert service_tag({"service": "smtp", "log_namespace": "mailstack.smtpd.protocol"}) == "smtpd"
    assert service_tag({"service": "smtps", "log_namespace": "mailstack.smtpd"}) == "smtps/smtpd"
    assert service_tag({"service": "imaps", "log_namespace": "mailstack.imapd"}) == "imaps"
    assert service_tag({"log_namespace": "mailstack.qmgr"}) == "qmgr"
    assert service_tag({"log_namespace": "twisted.internet.tcp"}) == "twisted"


def test_levels_get_postfix_prefixes():
    """Warnings and errors read 'warning:' and 'error:' as in Postfix."""
    base = {"log_format": "disk full", "log_time": 0, "log_namespace": "mailstack.cleanup"}
    assert format_line(dict(base, log_level=LogLevel.warn), "h", pid=1).endswith("cleanup[1]: warning: disk full")
    assert format_line(dict(base, log_level=LogLevel.error), "h", pid=1).endswith("cleanup[1]: error: disk full")
    assert format_line(dict(base, log_level=LogLevel.critical), "h", pid=1).endswith("fatal: disk full")


def test_failure_traceback_follows_on_tagged_lines():
    """An unexpected exception logs its traceback, every line tagged."""
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    event = {"log_format": "3F2A9C: unexpected error", "log_time": 0, "log_level": LogLevel.critical,
             "log_namespace": "mailstack.local", "log_failure": failure}
    lines = format_line(event, "h", pid=7).splitlines()
    assert lines[0].endswith("local[7]: fatal: 3F2A9C: unexpected error")
    assert len(lines) > 2 and all("mailstack/local[7]: " in line for line in lines)
    assert "ZeroDivisionError" in lines[-1]


def test_twisted_port_chatter_dropped_but_other_legacy_messages_kept(tmp_path, capsys):
    """'Factory starting on 2525' lines are dropped (the master logs each service once); other log.msg text stays."""
    from twisted.logger import globalLogPublisher
    from twisted.python import log as legacy

    from mailstack.common.maillog import observer_for
    from mailstack.config import maincf
    from tests.conftest import run_cli

    run_cli("--config", str(tmp_path), "init", "--ports", "dev", "--hostname", "mail.example.test")
    capsys.readouterr()
    observer = observer_for(maincf.load(str(tmp_path)), foreground=True)
    globalLogPublisher.addObserver(observer)
    try:
        legacy.msg("SMTPServerFactory starting on 2525")
        legacy.msg("(TCP Port 2525 Closed)")
        legacy.msg("something an admin should see")
    finally:
        globalLogPublisher.removeObserver(observer)
    text = capsys.readouterr().out
    assert "something an admin should see" in text
    assert "starting on" not in text and "Closed" not in text


class _CountingStream(io.StringIO):
    """A text stream that counts its flushes."""

    flushes = 0

    def flush(self):
        self.flushes += 1
        super().flush()


def test_reactor_paced_flush_once_per_turn():
    """With a reactor, many info lines in one turn cost one flush, done on the next turn."""
    from twisted.internet.task import Clock

    clock, out = Clock(), _CountingStream()
    log = Logger(namespace="mailstack.smtpd", observer=MaillogObserver(out, "h", reactor=clock))
    for n in range(5):
        log.info("line {n}", n=n)
    assert out.flushes == 0
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert out.flushes == 1
    assert [line.rsplit(": ", 1)[1] for line in out.getvalue().splitlines()] == ["line %d" % n for n in range(5)]
    log.info("next turn")
    clock.advance(0)
    assert out.flushes == 2 and not clock.getDelayedCalls()


def test_warning_flushes_at_once_with_the_lines_before_it():
    """A warning is never held back: it flushes itself and every buffered line before it."""
    from twisted.internet.task import Clock

    clock, out = Clock(), _CountingStream()
    log = Logger(namespace="mailstack.cleanup", observer=MaillogObserver(out, "h", reactor=clock))
    log.info("queued")
    log.warn("disk nearly full")
    assert out.flushes == 1
    assert out.getvalue().splitlines()[1].endswith("warning: disk nearly full")


def test_lines_from_other_threads_flush_at_once():
    """A line logged from a worker thread cannot wait for a reactor turn, so it flushes immediately."""
    import threading

    from twisted.internet.task import Clock

    clock, out = Clock(), _CountingStream()
    log = Logger(namespace="mailstack.queue", observer=MaillogObserver(out, "h", reactor=clock))
    worker = threading.Thread(target=log.info, args=("from a thread",))
    worker.start()
    worker.join()
    assert out.flushes == 1 and not clock.getDelayedCalls()
    assert out.getvalue().endswith("from a thread\n")


def test_buffered_lines_flushed_at_reactor_shutdown(tmp_path):
    """Lines still buffered when the reactor stops reach the file (the shutdown trigger flushes)."""
    from twisted.internet.task import Clock

    class ShutdownClock(Clock):
        """A Clock that records system event triggers as a reactor would."""

        def __init__(self):
            super().__init__()
            self.triggers = []

        def addSystemEventTrigger(self, phase, event, f, *args):
            self.triggers.append((phase, event, f))

    clock = ShutdownClock()
    path = tmp_path / "maillog"
    with open(path, "a", encoding="utf-8") as stream:
        log = Logger(namespace="mailstack.smtpd", observer=MaillogObserver(stream, "h", reactor=clock))
        log.info("last words")
        assert path.read_text() == ""
        [(phase, event, trigger)] = clock.triggers
        assert (phase, event) == ("after", "shutdown")
        trigger()
        assert path.read_text().endswith("last words\n")


def test_fast_formatting_matches_twisted_formatEvent():
    """The str.format_map fast path gives formatEvent's text, including calls, missing keys and literals."""
    from twisted.logger import formatEvent

    from mailstack.common.maillog import _format_text

    class Peer:
        """An object with an attribute and a method, as log fields can be."""

        host = "192.0.2.1"

        def describe(self):
            return "peer"

    events = [
        {"log_format": "{queue_id}: from=<{sender}>, size={size!r}", "queue_id": "3F", "sender": "a@b", "size": 12},
        {"log_format": "{peer.host} {peer.describe()}", "peer": Peer()},
        {"log_format": "{missing}"},
        {"log_format": None},
        {"log_format": "{{braces}} {n:>4} {d[k]}", "n": 3, "d": {"k": 5}},
    ]
    for event in events:
        assert _format_text(event) == formatEvent(event)
