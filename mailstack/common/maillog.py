# -*- test-case-name: tests.common.test_maillog -*-
"""Postfix maillog-style logging on top of twisted.logger.

Every line looks like syslog's, so that tools written for Postfix logs
(pflogsumm, fail2ban, grep habits) read mailstack's::

    Nov 22 10:00:00 mail mailstack/smtpd[4242]: 3F2A9C: client=host[192.0.2.1]

The service tag comes from the event's ``service`` key when a protocol
knows its master.cf service name (``submission``), else from the logger
namespace: ``mailstack.smtpd.server`` logs as ``smtpd``, Twisted's own
events as ``twisted``.  Warnings, errors and critical events get Postfix's
``warning:``, ``error:`` and ``fatal:`` prefixes; a failure's traceback
follows its message, one log line per traceback line.  Debug events are
dropped unless ``verbose`` is set.

Usage: ``log = Logger(namespace="mailstack.qmgr")`` then
``log.info("{queue_id}: removed", queue_id=qid)``; pass ``service=name`` to
override the tag.

Design note: several processes, one log
---------------------------------------
With ``process_min_avail`` above 1, worker processes write to the same
destination as the master: its standard output (a pipe or a terminal under
``twistd -n``) or the log file.  Lines must never be cut into each other,
so the observer keeps its own buffer of encoded lines and writes them with
``os.write`` in chunks of whole lines of at most ``PIPE_BUF`` (4096) bytes:
POSIX makes such a write to a pipe atomic, and the log file is opened with
``O_APPEND`` so that each write lands whole at the end, whoever else
appends.  A line longer than that is cut into several lines that each
carry the tag.  Streams without a file descriptor (``io.StringIO`` in
tests) get the same text through ``write`` and ``flush``.
"""

import atexit
import collections
import io
import os
import re
import select
import socket
import sys
import threading
import time

from twisted.logger import (FilteringLogObserver, ILogObserver, ILogFilterPredicate,
                            LogLevel, LogLevelFilterPredicate, PredicateResult,
                            formatEvent)
from zope.interface import implementer

_PREFIX = {
    LogLevel.warn: "warning: ",
    LogLevel.error: "error: ",
    LogLevel.critical: "fatal: ",
}


def service_tag(event):
    """Return the service name an event is logged under.

    SMTP server lines follow Postfix's stock master.cf, where each smtpd
    service has its own ``syslog_name``: the ``smtp`` service logs as
    ``smtpd``, ``submission`` as ``submission/smtpd``, ``smtps`` as
    ``smtps/smtpd`` — the names pflogsumm and fail2ban look for.
    """
    namespace = event.get("log_namespace") or ""
    parts = namespace.split(".")
    program = parts[1] if parts[0] == "mailstack" and len(parts) > 1 else (parts[0] or "mailstack")
    service = event.get("service")
    if not service:
        return program
    if program == "smtpd" and service != "smtpd":
        return "smtpd" if service == "smtp" else service + "/smtpd"
    return service


_stamp_cache = (None, "")  # (second, its "%b %d %H:%M:%S"), replaced whole

# This process's pid, kept current across fork (twistd daemonises after the
# observer is made): os.getpid() per line was a visible cost.
_pid = os.getpid()


def _forked():
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)

# Levels whose lines are written at once (a set: comparing constants is slow).
_URGENT = frozenset((LogLevel.warn, LogLevel.error, LogLevel.critical))


def _format_text(event):
    """Return an event's text as twisted.logger's ``formatEvent`` would.

    Plain ``{name}``/``{name.attr}``/``{name!r}`` formats (all of
    mailstack's) go through ``str.format_map``, several times cheaper than
    Twisted's formatter; formats that call (``{f()}``), and any format that
    fails here, take Twisted's path with its own error text.
    """
    fmt = event.get("log_format")
    if isinstance(fmt, str) and "()" not in fmt:
        try:
            return fmt.format_map(event)
        except Exception:  # missing key, bad field: Twisted's path says so its way
            pass
    return formatEvent(event)


def format_line(event, hostname, syslog_name="mailstack", pid=None):
    """Return the maillog line(s) for a twisted.logger event, without the final newline."""
    tag, lines = format_parts(event, hostname, syslog_name, pid)
    return "\n".join(tag + line for line in lines)


def format_parts(event, hostname, syslog_name="mailstack", pid=None):
    """Return ``(tag, lines)`` for an event: each log line is ``tag + line``."""
    when = event.get("log_time") or time.time()
    global _stamp_cache
    second, stamp = _stamp_cache
    if second != int(when):  # localtime()+strftime() once per second, not per line
        second = int(when)
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(second))
        _stamp_cache = (second, stamp)
    tag = "%s %s %s/%s[%d]: " % (stamp, hostname, syslog_name, service_tag(event),
                                 _pid if pid is None else pid)
    text = _format_text(event)
    level = event.get("log_level", LogLevel.info)
    text = _PREFIX.get(level, "") + text
    failure = event.get("log_failure")
    lines = text.splitlines() or [""]
    if failure is not None:
        try:
            lines.extend(failure.getTraceback().rstrip("\n").splitlines())
        except Exception:  # a broken failure must not break logging
            lines.append("(traceback unavailable)")
    return tag, lines


# Writes of at most this many bytes to a pipe are atomic (POSIX; 4096 on Linux).
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)


def encode_lines(tag, lines, limit=PIPE_BUF):
    """Return the lines as UTF-8 bytes, each ending in a newline and at most ``limit`` bytes.

    A longer line is cut (between characters) into several, each starting with ``tag``.
    """
    if len(lines) == 1 and (len(tag) + len(lines[0])) * 4 < limit:  # the usual case: one short line
        return [(tag + lines[0] + "\n").encode("utf-8", "backslashreplace")]
    head = tag.encode("utf-8", "backslashreplace")
    budget = max(limit - len(head) - 1, 16)
    result = []
    for line in lines:
        body = line.encode("utf-8", "backslashreplace")
        while len(body) > budget:
            cut = budget
            while cut > 0 and (body[cut] & 0xC0) == 0x80:  # not inside a UTF-8 sequence
                cut -= 1
            cut = cut or budget
            result.append(head + body[:cut] + b"\n")
            body = body[cut:]
        result.append(head + body + b"\n")
    return result


class LineWriter:
    """Write encoded lines to a stream's file descriptor in whole-line chunks of at most PIPE_BUF bytes.

    Thread-safe and reentrant (a signal handler may log while a flush is
    under way): lines wait in a deque; one flusher at a time drains it,
    and a caller that finds a flush under way leaves its lines to it.

    Args:
        stream: a file object; without a usable ``fileno()`` the lines go
            through its ``write`` and ``flush`` instead.
    """

    def __init__(self, stream):
        self._stream = stream
        self._pending = collections.deque()
        self._lock = threading.Lock()
        try:
            self._fd = stream.fileno()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            self._fd = None

    def add(self, encoded):
        """Queue encoded lines (each ending in a newline, at most PIPE_BUF bytes)."""
        self._pending.extend(encoded)

    def flush(self):
        """Write every queued line now (unless another flush under way will)."""
        while self._pending:
            if not self._lock.acquire(blocking=False):
                return
            try:
                self._drain()
            finally:
                self._lock.release()

    def _drain(self):
        if self._fd is None:
            text = []
            while self._pending:
                text.append(self._pending.popleft().decode("utf-8", "replace"))
            self._stream.write("".join(text))
            self._stream.flush()
            return
        try:
            self._stream.flush()  # anything written through the stream itself goes first
        except Exception:
            pass
        chunk, size = [], 0
        while self._pending:
            line = self._pending[0]
            if chunk and size + len(line) > PIPE_BUF:
                self._write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(self._pending.popleft())
            size += len(line)
        if chunk:
            self._write(b"".join(chunk))

    def _write(self, data):
        view = memoryview(data)
        stalls = 0
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:  # a non-blocking descriptor shared with someone else
                stalls += 1
                if stalls > 50:
                    return
                select.select([], [self._fd], [], 0.1)
                continue
            except InterruptedError:
                continue
            except OSError:  # closed or broken destination (EPIPE, EBADF, ENOSPC): drop, never pile up
                return
            view = view[written:]


@implementer(ILogObserver)
class MaillogObserver:
    """Write events as maillog lines to a text stream.

    Without a reactor every line is flushed as it is written.  With one,
    lines logged from the reactor's thread go into the stream's buffer and
    the stream is flushed once per reactor turn (``callLater(0)``), so a
    busy server pays one ``write(2)`` per turn instead of one per line.
    No line is held back beyond that: warnings, errors and fatal lines,
    lines logged from other threads and lines logged while the reactor is
    not running flush at once (with everything before
    them); the buffer is also flushed at reactor shutdown and at process
    exit.

    Args:
        stream: a text file object (``sys.stdout`` or an opened log file).
        hostname: the host name in each line (``myhostname``).
        syslog_name: the program name (``syslog_name``).
        reactor: the reactor whose turns pace the flushes; None flushes
            every line.
    """

    def __init__(self, stream, hostname=None, syslog_name="mailstack", reactor=None):
        self._stream = stream
        self._writer = LineWriter(stream)
        self._hostname = (hostname or socket.gethostname()).split(".")[0]
        self._syslog_name = syslog_name
        self._reactor = reactor
        self._thread = threading.get_ident()
        self._flush_call = None
        if reactor is not None:
            add_trigger = getattr(reactor, "addSystemEventTrigger", None)
            if add_trigger is not None:
                add_trigger("after", "shutdown", self.flush)
            atexit.register(self.flush)

    def __call__(self, event):
        try:
            tag, lines = format_parts(event, self._hostname, self._syslog_name)
            self._writer.add(encode_lines(tag, lines))
            # Before and after the reactor runs (twistd's last lines, then a
            # re-raised SIGTERM that skips atexit) nothing would flush later.
            if (self._reactor is None or threading.get_ident() != self._thread
                    or not getattr(self._reactor, "running", True)
                    or event.get("log_level") in _URGENT):
                self.flush()
            elif self._flush_call is None:
                self._flush_call = self._reactor.callLater(0, self._flush_turn)
        except Exception:  # a logger must never raise into the code that logs
            pass

    def _flush_turn(self):
        self._flush_call = None
        self.flush()

    def flush(self):
        """Write buffered lines to the stream's file now."""
        try:
            self._writer.flush()
        except Exception:  # closed stream at exit, full disk: nothing to report it to
            pass


# Twisted's per-port chatter, which the master's "service NAME (PROGRAM) on
# ENDPOINT" line already says once per service (Twisted says it once per socket).
# Unix sockets say "starting on '/path'" and "(Port '/path' Closed)".
_PORT_CHATTER = re.compile(r"^(.+ starting on (\d+|'[^']*')|\((.+ )?Port \S+ Closed\)|(Starting|Stopping) factory .*)$")


@implementer(ILogFilterPredicate)
class PortChatterPredicate:
    """Drop Twisted's listening-port notices unless running verbose."""

    def __call__(self, event):
        if event.get("log_namespace") != "log_legacy" or event.get("log_level") == LogLevel.warn:
            return PredicateResult.maybe
        message = event.get("message") or ()
        if len(message) == 1 and _PORT_CHATTER.match(str(message[0])):
            return PredicateResult.no
        return PredicateResult.maybe


def observer_for(config, foreground, verbose=False, reactor=None):
    """Return the log observer for a loaded config.

    Args:
        config: the :class:`~mailstack.config.maincf.Config`.
        foreground: True under ``twistd -n``: log to standard output;
            otherwise to ``maillog_file`` (or ``$data_directory/maillog``).
        verbose: pass debug events through.
        reactor: when given, flush the log once per reactor turn instead
            of once per line (see :class:`MaillogObserver`).
    """
    if foreground:
        stream = sys.stdout
    else:
        path = config["maillog_file"] or os.path.join(config["data_directory"], "maillog")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        # Kept open for the process's life; "a" is O_APPEND, so that the
        # master's and the workers' writes each land whole at the end.
        stream = open(path, "a", encoding="utf-8")
    observer = MaillogObserver(stream, config["myhostname"], config["syslog_name"], reactor)
    level = LogLevel.debug if verbose else LogLevel.info
    predicates = [LogLevelFilterPredicate(defaultLogLevel=level)]
    if not verbose:
        predicates.append(PortChatterPredicate())
    return FilteringLogObserver(observer, predicates)
