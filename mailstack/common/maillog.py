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
"""

import atexit
import os
import re
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
    when = event.get("log_time") or time.time()
    global _stamp_cache
    second, stamp = _stamp_cache
    if second != int(when):  # localtime()+strftime() once per second, not per line
        second = int(when)
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(second))
        _stamp_cache = (second, stamp)
    tag = "%s %s %s/%s[%d]: " % (stamp, hostname, syslog_name, service_tag(event),
                                 os.getpid() if pid is None else pid)
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
    return "\n".join(tag + line for line in lines)


@implementer(ILogObserver)
class MaillogObserver:
    """Write events as maillog lines to a text stream.

    Without a reactor every line is flushed as it is written.  With one,
    lines logged from the reactor's thread go into the stream's buffer and
    the stream is flushed once per reactor turn (``callLater(0)``), so a
    busy server pays one ``write(2)`` per turn instead of one per line.
    No line is held back beyond that: warnings, errors and fatal lines, and
    lines logged from other threads, flush at once (with everything before
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
            line = format_line(event, self._hostname, self._syslog_name)
            self._stream.write(line + "\n")
            if (self._reactor is None or threading.get_ident() != self._thread
                    or event.get("log_level", LogLevel.info) >= LogLevel.warn):
                self.flush()
            elif self._flush_call is None:
                self._flush_call = self._reactor.callLater(0, self._flush_turn)
        except Exception:  # a logger must never raise into the code that logs
            pass

    def _flush_turn(self):
        self._flush_call = None
        self.flush()

    def flush(self):
        """Flush buffered lines to the stream's file now."""
        try:
            self._stream.flush()
        except Exception:  # closed stream at exit, full disk: nothing to report it to
            pass


# Twisted's per-port chatter, which the master's "service NAME (PROGRAM) on
# ENDPOINT" line already says once per service (Twisted says it once per socket).
_PORT_CHATTER = re.compile(r"^(.+ starting on \d+|\(.+ Port \d+ Closed\)|(Starting|Stopping) factory .*)$")


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
        stream = open(path, "a", encoding="utf-8")  # kept open for the process's life
    observer = MaillogObserver(stream, config["myhostname"], config["syslog_name"], reactor)
    level = LogLevel.debug if verbose else LogLevel.info
    predicates = [LogLevelFilterPredicate(defaultLogLevel=level)]
    if not verbose:
        predicates.append(PortChatterPredicate())
    return FilteringLogObserver(observer, predicates)
