# -*- test-case-name: tests.smtpd.test_protocol -*-
"""The ESMTP server protocol: one instance per SMTP connection.

SYNOPSIS
    ``SMTPServerProtocol(server)`` where ``server`` is a
    :class:`mailstack.smtpd.service.SMTPServer` (configuration, queue,
    cleanup, auth, clock).

DESCRIPTION
    Written directly on :class:`twisted.internet.protocol.Protocol`: every
    complete line of one ``dataReceived`` is handled in order and the
    replies go out in one write (PIPELINING, RFC 2920).  A command whose
    answer needs I/O (a table lookup, AUTH, the queue's fsync) pauses the
    line loop until it is answered, so replies always keep the order of
    the commands.

    DATA content streams through :class:`mailstack.smtpd.data.DotReader`
    into cleanup and the queue file; only ``<CR><LF>.<CR><LF>`` ends it.
    BDAT (RFC 3030) chunks are copied byte for byte.  The message size is
    checked against ``SIZE=`` at MAIL and while streaming: past
    ``message_size_limit`` nothing more is stored and the answer is
    ``552 5.3.4``.

    Extensions: PIPELINING, SIZE, VRFY (off by default), ETRN, STARTTLS,
    AUTH, ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING.

    Every reply but the greeting and the EHLO lines carries an RFC 3463
    status code.  An unexpected exception becomes ``451 4.3.0 Error:
    internal error`` and one logged traceback; no traceback reaches a client.

PARAMETERS
    smtpd_banner, smtpd_helo_required, strict_rfc821_envelopes,
    line_length_limit, smtpd_recipient_limit, smtpd_timeout,
    smtpd_error_sleep_time, smtpd_soft_error_limit, smtpd_hard_error_limit,
    smtpd_junk_command_limit,
    message_size_limit, disable_vrfy_command, smtpd_sasl_auth_enable,
    smtpd_tls_security_level, smtpd_tls_auth_only, smtpd_forbid_bare_newline,
    smtpd_forbid_bare_newline_exclusions, smtpd_forbid_bare_newline_reject_code,
    smtpd_reject_unlisted_recipient, smtpd_delay_reject, fast_flush_domains
    and the restriction lists of :mod:`mailstack.smtpd.check`.

STANDARDS
    RFC 5321 (SMTP), RFC 1870 (SIZE), RFC 2920 (PIPELINING), RFC 3207
    (STARTTLS; §4.2: input pipelined after STARTTLS is discarded,
    CVE-2011-0411), RFC 4954 (AUTH), RFC 2034 and RFC 3463 (enhanced status
    codes), RFC 6152 (8BITMIME), RFC 3461 (DSN), RFC 6531 (SMTPUTF8),
    RFC 3030 (CHUNKING), RFC 1985 (ETRN).
"""

import socket

from twisted.internet import defer, interfaces, tcp
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailstack.common.address import AddressError, parse_params, parse_path, xtext_decode
from mailstack.common.reply import INTERNAL_ERROR, Reject
from mailstack.queue import Recipient
from mailstack.smtpd import check
from mailstack.smtpd.sasl import SASLCommands
from mailstack.smtpd.transfer import TransferCommands

log = Logger(namespace="mailstack.smtpd")

# Unprocessed input above this size stops reading from the client until it is consumed.
_PAUSE_AT = 1024 * 1024


class SMTPServerProtocol(TransferCommands, SASLCommands, Protocol):
    """One ESMTP session.  See the module docstring."""

    # command word -> handler; one method per command (STYLE §3).
    COMMANDS = {
        b"HELO": "smtp_helo", b"EHLO": "smtp_ehlo", b"MAIL": "smtp_mail", b"RCPT": "smtp_rcpt",
        b"DATA": "smtp_data", b"BDAT": "smtp_bdat", b"RSET": "smtp_rset", b"NOOP": "smtp_noop",
        b"QUIT": "smtp_quit", b"VRFY": "smtp_vrfy", b"ETRN": "smtp_etrn", b"HELP": "smtp_help",
        b"STARTTLS": "smtp_starttls", b"AUTH": "smtp_auth",
    }
    # Commands a client may send before TLS when smtpd_tls_security_level = encrypt.
    _JUNK = frozenset((b"NOOP", b"VRFY", b"ETRN", b"RSET"))
    _BEFORE_TLS = (b"EHLO", b"HELO", b"STARTTLS", b"NOOP", b"RSET", b"QUIT", b"HELP")
    # Forbidden words of web proxies and the like: disconnect at once (Postfix smtpd_forbidden_commands).
    _FORBIDDEN = (b"CONNECT", b"GET", b"POST")

    def __init__(self, server):
        self.server = server
        self.config = server.config
        self.clock = server.reactor
        self.service = server.service_name
        self._in = b""
        self._pos = 0                   # start of the unconsumed input in _in (no copy per line)
        self._out = []
        self._busy = False
        self._closing = False
        self._mode = "command"          # command, data, bdat, auth, sleep
        self._skipping = False          # dropping the rest of an overlong line
        self._timer = None
        self._sleeping = False
        self._paused = False
        self._direct = False
        self._lost = False
        self._delay_due = 0
        self._counts = {}
        self._last_command = "CONNECT"
        self.error_count = 0
        self.junk_count = 0
        self.client_address = ""
        self.client_name = "unknown"
        self.helo = ""
        self.esmtp = False
        self.tls = False
        self.sasl_username = ""
        self.sasl_method = ""
        self._sasl = None
        self._sasl_success = None   # a finished SASL exchange whose final data awaits the client
        self._connect_reject = None
        self._line_limit = self.config["line_length_limit"]
        self._size_limit = self.config["message_size_limit"]
        self._reset_transaction()

    # -- connection ---------------------------------------------------------

    def connectionMade(self):
        transport = self.transport
        while transport is not None and not hasattr(transport, "setTcpNoDelay"):
            transport = getattr(transport, "transport", None)
        if transport is not None:
            try:
                transport.setTcpNoDelay(True)
            except OSError:
                pass
        host = self.transport.getPeer().host
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        self.client_address = host
        self.tls = interfaces.ISSLTransport.providedBy(self.transport)
        self._direct = isinstance(self.transport, tcp.Server) and all(
            hasattr(self.transport, name) for name in ("socket", "dataBuffer", "_tempDataBuffer"))
        self._timer = self.clock.callLater(self.config["smtpd_timeout"], self._timed_out)
        self._busy = True
        self._run(self._greet())
        if not self._busy:
            self._process()  # greeted at once: send the banner now

    async def _greet(self):
        self.client_name = await self.server.peer_name(self.client_address)
        if self._lost:
            return None  # gone during the name lookup: never counted, nothing to say
        log.info("connect from {client}", client=self.peer, service=self.service)
        refused = self.server.admit(self)
        if isinstance(refused, defer.Deferred):  # counted by the master (process_min_avail > 1)
            refused = await refused
            if self._lost:
                return None  # gone while the master counted: connectionLost released it
        if refused:
            self._closing = True
            return refused
        verdict = await self._stage_checks("CONNECT")
        if verdict is not None:
            self._connect_reject = verdict
        return (220, None, self.config["smtpd_banner"])

    @property
    def peer(self):
        """``host[ip]`` as in Postfix log lines."""
        return "%s[%s]" % (self.client_name, self.client_address)

    @property
    def proto(self):
        return "ESMTP" if self.esmtp else "SMTP"

    def connectionLost(self, reason=None):
        self._lost = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._abort_writer()
        self._reset_transaction()
        self.server.release(self)
        if self.client_address:
            summary = " ".join("%s=%s" % (name, ok if ok == total else "%d/%d" % (ok, total))
                               for name, (ok, total) in self._counts.items())
            ok = sum(v[0] for v in self._counts.values())
            total = sum(v[1] for v in self._counts.values())
            commands = "commands=%s" % (ok if ok == total else "%d/%d" % (ok, total))
            log.info("disconnect from {client} {summary}", client=self.peer,
                     summary=(summary + " " + commands).strip(), service=self.service)

    def _timed_out(self):
        log.info("timeout after {command} from {client}", command=self._last_command,
                 client=self.peer, service=self.service)
        self._out.append(b"421 4.4.2 %s Error: timeout exceeded\r\n" % self._hostname())
        self._closing = True
        self._flush()

    def _hostname(self):
        return self.config["myhostname"].encode("ascii", "replace")

    # -- input ----------------------------------------------------------------

    def dataReceived(self, data):
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.config["smtpd_timeout"])
        if self._closing:
            return
        self._in += data
        if not self._busy:
            self._process()
        elif len(self._in) - self._pos > _PAUSE_AT and not self._paused:
            # A client that keeps sending while we wait (fsync, lookups): stop
            # reading instead of buffering without bound.
            self._paused = True
            self.transport.pauseProducing()

    def _process(self):
        """Handle every complete unit of input, then send the replies in one write."""
        while not self._busy and not self._closing and not self._lost and (
                len(self._in) > self._pos or (self._mode == "bdat" and not self._bdat_left)):
            if self._paused and len(self._in) - self._pos < _PAUSE_AT:
                self._paused = False
                self.transport.resumeProducing()
            if self._mode in ("data", "bdat"):
                self._compact()
            if self._mode == "data":
                rest = self._reader.feed(self._in)
                self._in = b""
                if rest is None:
                    break
                self._in = rest
                self._mode = "command"
                self._run(self._end_of_data(), "data")
                continue
            if self._mode == "bdat":
                self._bdat_bytes()
                continue
            line = self._next_line()
            if line is None:
                break
            if self._mode == "auth":
                self._run(self._auth_response(line))
            else:
                self._command(line)
        self._compact()
        self._flush()

    def _compact(self):
        """Drop the consumed part of the input buffer (once per batch, not per line)."""
        if self._pos:
            self._in = self._in[self._pos:]
            self._pos = 0

    def _next_line(self):
        """Return the next complete line (without its line end), or None."""
        start = self._pos
        end = self._in.find(b"\n", start)
        if end < 0:
            if len(self._in) - start > self._line_limit:
                # Keep memory bounded: drop the line, answer when its end arrives.
                self._skipping = True
                self._in, self._pos = b"", 0
            return None
        line = self._in[start:end]
        self._pos = end + 1
        if self._skipping or end - start > self._line_limit:
            self._skipping = False
            self._count("unknown", False)
            self._error(500, "5.5.2", "Error: line too long")
            return None if self._pos >= len(self._in) else self._next_line()
        if line.endswith(b"\r"):
            line = line[:-1]
        elif self._bare_newline_forbidden():
            # Postfix smtpd_forbid_bare_newline: a bare <LF> is refused and the session ends.
            self._reply_bare_newline()
            return None
        return line

    def _bare_newline_forbidden(self):
        return self.config["smtpd_forbid_bare_newline"] in ("yes", "reject") and not self.server.in_networks(
            self.client_address, "smtpd_forbid_bare_newline_exclusions")

    def _reply_bare_newline(self):
        code = self.config["smtpd_forbid_bare_newline_reject_code"]
        self._out.append(b"%d 5.5.2 %s Error: bare <LF> received\r\n" % (code, self._hostname()))
        self._pos = 0
        log.info("disconnect: bare <LF> received from {client} after {command}", client=self.peer,
                 command=self._last_command, service=self.service)
        self._closing = True
        self._in = b""

    # -- output ---------------------------------------------------------------

    def _send(self, code, dsn, text):
        """Queue one reply; ``text`` may be a list for a multi-line reply."""
        lines = text if isinstance(text, list) else [text]
        out = []
        for i, line in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            out.append("%d%s%s%s\r\n" % (code, sep, ("%s " % dsn) if dsn else "", line))
        self._out.append("".join(out).encode("utf-8"))
        self._delay_due = code
        if code >= 400 and code != 421:
            self.error_count += 1

    def _error(self, code, dsn, text):
        self._send(code, dsn, text)
        return code

    def _flush(self):
        if self._sleeping or self._lost:
            return
        if self._out and self.transport is not None:
            data = b"".join(self._out)
            self._out = []
            self._write(data)
        if self._closing and not self._busy and self.transport is not None:
            self.transport.loseConnection()

    def _write(self, data):
        """Write replies, straight to the socket when nothing is queued before them.

        Twisted's ``write`` always goes through the reactor: it registers
        the socket for writing and sends on the next iteration, two
        ``epoll_ctl`` calls and a loop turn per reply.  A reply to a
        non-pipelining client almost always fits the empty socket buffer, so
        it is sent at once; whatever is not sent (or any reply while Twisted
        still holds data) takes the normal path, which keeps the order.
        """
        transport = self.transport
        if self._direct and not transport.dataBuffer and not transport._tempDataBuffer \
                and not transport.disconnecting:
            try:
                sent = transport.socket.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # let Twisted's write path see and report the error
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    # -- running commands ---------------------------------------------------

    def _count(self, name, ok):
        counts = self._counts.setdefault(name, [0, 0])
        counts[1] += 1
        if ok:
            counts[0] += 1

    def _command(self, line):
        word, _, arg = line.partition(b" ")
        verb = word.upper()
        self._last_command = verb.decode("ascii", "replace") or "UNKNOWN"
        if self.error_count >= self.config["smtpd_hard_error_limit"]:
            log.info("too many errors after {command} from {client}", command=self._last_command,
                     client=self.peer, service=self.service)
            self._send(421, "4.7.0", "%s Error: too many errors" % self.config["myhostname"])
            self._closing = True
            return
        if verb in self._FORBIDDEN and arg:
            log.warn("non-SMTP command from {client}: {line}", client=self.peer,
                     line=line[:100].decode("ascii", "replace"), service=self.service)
            self._send(221, "2.7.0", "Error: I can break rules, too. Goodbye.")
            self._closing = True
            return
        method = self.COMMANDS.get(verb)
        if verb in self._JUNK:
            # Postfix's smtpd_junk_command_limit: past it, every such command is an error,
            # so a client that only idles or probes gets slowed and then cut off.
            self.junk_count += 1
            if self.junk_count > self.config["smtpd_junk_command_limit"]:
                self.error_count += 1
        if method is None:
            self._count("unknown", False)
            if not line.strip():
                self._error(500, "5.5.2", "Error: bad syntax")
            else:
                self._error(502, "5.5.2", "Error: command not recognized")
            self._after_reply()
            return
        try:
            text = arg.decode("utf-8")
        except UnicodeDecodeError:
            self._count(verb.decode().lower(), False)
            self._error(500, "5.5.2", "Error: bad UTF-8 syntax")
            self._after_reply()
            return
        name = method[5:]
        if self._connect_reject is not None and verb not in (b"QUIT", b"RSET", b"NOOP", b"HELP"):
            self._count(name, False)
            self._send(*self._reject_args(self._connect_reject.reply))
            self._after_reply()
            return
        if (self.config["smtpd_tls_security_level"] == "encrypt" and not self.tls
                and verb not in self._BEFORE_TLS):
            self._count(name, False)
            self._error(530, "5.7.0", "Must issue a STARTTLS command first")
            self._after_reply()
            return
        try:
            result = getattr(self, method)(text.strip())
        except Reject as rej:
            result = rej
        except Exception:
            log.failure("{session}: error in {command}", session=self._session_id(),
                        command=self._last_command, service=self.service)
            result = INTERNAL_ERROR
        self._run(result, name)

    def _run(self, result, name=None):
        """Finish a command: ``result`` is a reply tuple, None, or a coroutine giving one.

        A coroutine is started here.  One whose awaits are all answered
        already (no lookup to wait for: the usual greeting and RCPT) ends
        at once and is answered without any Deferred; one that has to wait
        holds the session (``_busy``) and is driven on by :func:`_drive`.
        """
        if hasattr(result, "__await__"):
            guarded = self._guard(result, name)
            try:
                waiting = guarded.send(None)
            except StopIteration:
                self._busy = False
                self._after_reply()
                return
            self._busy = True
            _drive(guarded, waiting).addCallback(self._resume)
            return
        self._answer(result, name)
        self._after_reply()

    async def _guard(self, coroutine, name):
        try:
            result = await coroutine
        except Reject as rej:
            result = rej
        except Exception:
            log.failure("{session}: error in {command}", session=self._session_id(),
                        command=self._last_command, service=self.service)
            result = INTERNAL_ERROR
        self._answer(result, name)

    def _resume(self, _ignored):
        self._busy = False
        self._after_reply()
        if not self._busy and not self._lost:
            self._process()

    def _answer(self, result, name):
        if isinstance(result, Reject):
            result = (result.code, result.dsn, result.text)
        if result is None:
            return  # the handler answered (or will answer) and counted itself
        code = result[0]
        if name and code not in (334, 354):
            self._count(name, code < 400)
        self._send(*result)

    def _after_reply(self):
        """Apply Postfix's error delays before the reply just made goes out.

        Below ``smtpd_soft_error_limit`` errors, a 4xx/5xx reply waits
        ``smtpd_error_sleep_time``; from the soft limit on, every reply
        waits as many seconds as there were errors (Postfix ``smtpd_chat.c``).
        """
        code, self._delay_due = self._delay_due, 0
        if not code or self._closing or code == 421:
            return
        if self.error_count >= self.config["smtpd_soft_error_limit"]:
            delay = self.error_count
        elif code >= 400:
            delay = self.config["smtpd_error_sleep_time"]
        else:
            delay = 0
        if delay:
            self._busy = self._sleeping = True
            self.clock.callLater(delay, self._end_sleep)

    def _end_sleep(self):
        self._busy = self._sleeping = False
        if self._lost:
            return
        self._flush()
        self._process()

    def _session_id(self):
        return self.queue_id or "NOQUEUE"

    # -- transaction state ---------------------------------------------------

    def _reset_transaction(self):
        pending = getattr(self, "_pending_writer", None)
        if pending is not None:
            pending.abort()     # a message started at RCPT that will not be used
        self._pending_writer = None
        self.queue_id = None            # known once the queue file exists (first accepted RCPT)
        self.sender = None
        self.mail_params = {}
        self.recipients = []
        self.recipient_attempts = 0
        self._writer = None
        self._reader = None
        self._too_big = False
        self._bare_lf = False
        self._bdat_left = 0
        self._bdat_last = False
        self._bdat_started = False
        self._bdat_failed = None
        self._data_ok = False
        self._store_error = None        # a QueueError met while content streamed in

    def _abort_writer(self):
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def _reject_args(self, rej):
        return (rej.code, rej.dsn, rej.text)

    async def _stage_checks(self, stage, recipient=None):
        """Run the restriction lists that belong to ``stage``; return the deciding verdict or None.

        OK from one list ends that list only: the next list is still
        evaluated (relay restrictions, then recipient restrictions).
        """
        for parameter in self.server.stage_lists(stage):
            # A delayed client/helo/sender list still rejects in its own words (Postfix).
            ctx = self.server.check_context(self, self.server.list_stage(parameter, stage), recipient)
            verdict = await check.evaluate(ctx, parameter)
            if verdict.action in ("REJECT", "DEFER"):
                await self._log_reject(stage, ctx, verdict)
                return verdict
        return None

    async def _log_reject(self, stage, ctx, verdict):
        """Log Postfix's reject line; it names the queue id once the message has one (after a first accepted RCPT)."""
        log.info("{line}", line=check.reject_log(self.queue_id, stage, ctx, verdict.reply), service=self.service)

    # -- HELO, EHLO -----------------------------------------------------------

    def smtp_helo(self, arg):
        if not arg:
            return (501, "5.5.4", "Syntax: HELO hostname")
        self._abort_writer()
        self._reset_transaction()
        self.helo, self.esmtp = arg, False
        return self._helo_checks((250, None, self.config["myhostname"]))

    def smtp_ehlo(self, arg):
        if not arg:
            return (501, "5.5.4", "Syntax: EHLO hostname")
        self._abort_writer()
        self._reset_transaction()
        self.helo, self.esmtp = arg, True
        lines = [self.config["myhostname"], "PIPELINING"]
        lines.append("SIZE %d" % self._size_limit if self._size_limit else "SIZE")
        if not self.config["disable_vrfy_command"]:
            lines.append("VRFY")
        lines.append("ETRN")
        if self._starttls_offered():
            lines.append("STARTTLS")
        mechanisms = self._auth_mechanisms()
        if mechanisms:
            lines.append("AUTH " + " ".join(mechanisms))
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"]
        return self._helo_checks((250, None, lines))

    def _helo_checks(self, ok):
        if not self.server.stage_lists("HELO"):
            return ok

        async def run():
            verdict = await self._stage_checks("HELO")
            return verdict.reply if verdict else ok
        return run()

    def _starttls_offered(self):
        return (self.server.tls_options is not None and not self.tls
                and self.config["smtpd_tls_security_level"] in ("may", "encrypt"))

    # -- MAIL -----------------------------------------------------------------

    def smtp_mail(self, arg):
        if self.config["smtpd_helo_required"] and not self.helo:
            return (503, "5.5.1", "Error: send HELO/EHLO first")
        if self.sender is not None:
            return (503, "5.5.1", "Error: nested MAIL command")
        head, colon, rest = arg.partition(":")
        if not colon or head.strip().upper() != "FROM":
            return (501, "5.5.4", "Syntax: MAIL FROM:<address>")
        try:
            sender, params_text = parse_path(rest, self.config["strict_rfc821_envelopes"])
            params = parse_params(params_text)
        except AddressError:
            return (501, "5.1.7", "Bad sender address syntax")
        if params and not self.esmtp:
            return (555, "5.5.4", "Unsupported option: %s" % next(iter(params)))
        result = self._mail_params(params)
        if result is not None:
            return result
        if not self.mail_params.get("SMTPUTF8") and not sender.isascii():
            self.mail_params = {}
            return (553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")
        self.sender = sender
        if not self.server.stage_lists("MAIL"):
            return (250, "2.1.0", "Ok")

        async def run():
            verdict = await self._stage_checks("MAIL")
            if verdict:
                self.sender = None
                return verdict.reply
            return (250, "2.1.0", "Ok")
        return run()

    def _mail_params(self, params):
        """Check MAIL FROM parameters; keep them in ``mail_params``; return an error reply or None."""
        kept = {}
        for key, value in params.items():
            if key == "SIZE":
                if not value or not value.isdigit():
                    return (501, "5.5.4", "Bad message size syntax")
                if self._size_limit and int(value) > self._size_limit:
                    return (552, "5.3.4", "Message size exceeds fixed limit")
                kept[key] = int(value)
            elif key == "BODY":
                body = (value or "").upper()
                if body not in ("7BIT", "8BITMIME", "BINARYMIME"):
                    return (501, "5.5.4", "Bad BODY keyword value")
                kept[key] = body
            elif key == "SMTPUTF8":
                if value is not None:
                    return (501, "5.5.4", "Bad SMTPUTF8 syntax")
                kept[key] = True
            elif key == "RET":
                ret = (value or "").upper()
                if ret not in ("FULL", "HDRS") or "RET" in kept:
                    return (501, "5.5.4", "Bad RET parameter syntax")
                kept[key] = ret
            elif key == "ENVID":
                try:
                    kept[key] = xtext_decode(value or "")
                except AddressError:
                    return (501, "5.5.4", "Bad ENVID parameter syntax")
                if not kept[key] or len(kept[key]) > 100:
                    return (501, "5.5.4", "Bad ENVID parameter syntax")
            elif key == "AUTH":
                kept[key] = value  # RFC 4954 §5: accepted; we do not relay the identity
            else:
                return (555, "5.5.4", "Unsupported option: %s" % key)
        self.mail_params = kept
        return None

    # -- RCPT -----------------------------------------------------------------

    def smtp_rcpt(self, arg):
        if self.sender is None:
            return (503, "5.5.1", "Error: need MAIL command")
        head, colon, rest = arg.partition(":")
        if not colon or head.strip().upper() != "TO":
            return (501, "5.5.4", "Syntax: RCPT TO:<address>")
        self.recipient_attempts += 1
        try:
            address, params_text = parse_path(rest, self.config["strict_rfc821_envelopes"])
            params = parse_params(params_text)
        except AddressError:
            return (501, "5.1.3", "Bad recipient address syntax")
        if not address:
            return (501, "5.1.3", "Bad recipient address syntax")
        if not self.mail_params.get("SMTPUTF8") and not address.isascii():
            return (553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")
        if len(self.recipients) >= self.config["smtpd_recipient_limit"]:
            return (452, "4.5.3", "Error: too many recipients")
        recipient = Recipient(address)
        for key, value in params.items():
            if key == "NOTIFY" and value and self.esmtp:
                words = tuple(w.upper() for w in value.split(","))
                allowed = ("SUCCESS", "FAILURE", "DELAY")
                if not (words == ("NEVER",) or all(w in allowed for w in words)) or len(set(words)) != len(words):
                    return (501, "5.5.4", "Error: Bad NOTIFY parameter syntax")
                recipient.notify = words
            elif key == "ORCPT" and value and self.esmtp:
                kind, semi, text = value.partition(";")
                try:
                    decoded = xtext_decode(text)
                except AddressError:
                    decoded = ""
                if not semi or not kind or not decoded:
                    return (501, "5.5.4", "Error: Bad ORCPT parameter syntax")
                recipient.orcpt = "%s;%s" % (kind.lower(), decoded)
            else:
                return (555, "5.5.4", "Unsupported option: %s" % key)
        return self._rcpt_checks(recipient)

    async def _rcpt_checks(self, recipient):
        verdict = await self._stage_checks("RCPT", recipient.address)
        if verdict is None and self.config["smtpd_reject_unlisted_recipient"]:
            ctx = self.server.check_context(self, "RCPT", recipient.address)
            verdict = await ctx.unlisted_recipient(recipient.address)
            if verdict is not None:
                await self._log_reject("RCPT", ctx, verdict)
        if verdict is not None:
            return verdict.reply
        self.recipients.append(recipient)
        self._prepare_writer()
        return (250, "2.1.5", "Ok")

    # -- simple commands -----------------------------------------------------

    def smtp_rset(self, arg):
        if arg:
            return (501, "5.5.4", "Syntax: RSET")
        self._abort_writer()
        self._reset_transaction()
        return (250, "2.0.0", "Ok")

    def smtp_noop(self, arg):
        return (250, "2.0.0", "Ok")

    def smtp_quit(self, arg):
        self._closing = True
        return (221, "2.0.0", "Bye")

    def smtp_help(self, arg):
        return (214, "2.0.0", "Commands: " + " ".join(sorted(c.decode() for c in self.COMMANDS)))

    def smtp_vrfy(self, arg):
        if self.config["disable_vrfy_command"]:
            return (502, "5.5.1", "VRFY command is disabled")
        if not arg:
            return (501, "5.5.4", "Syntax: VRFY address")
        try:
            address, _ = parse_path(arg, False)
        except AddressError:
            return (501, "5.1.3", "Bad recipient address syntax")

        async def run():
            ctx = self.server.check_context(self, "RCPT", address)
            verdict = await ctx.unlisted_recipient(address)
            if verdict is not None:
                return verdict.reply
            return (252, "2.0.0", address)
        return run()

    def smtp_etrn(self, arg):
        if not self.helo and self.config["smtpd_helo_required"]:
            return (503, "5.5.1", "Error: send HELO/EHLO first")
        if self.sender is not None:
            return (503, "5.5.1", "Error: MAIL transaction in progress")
        if not arg or " " in arg:
            return (500, "5.5.4", "Syntax: ETRN domain")
        domain = arg.lstrip("@#").lower()
        if not domain or not self.server.fast_flush_allowed(domain):
            return (459, "4.3.0", "<%s>: service unavailable" % arg)

        async def run():
            await self.server.fast_flush(domain)
            return (250, "2.0.0", "Queuing started")
        return run()

    # -- STARTTLS (RFC 3207) ----------------------------------------------------

    def smtp_starttls(self, arg):
        if arg:
            return (501, "5.5.4", "Syntax: STARTTLS")
        if self.tls:
            return (554, "5.5.1", "Error: TLS already active")
        if not self._starttls_offered():
            return (502, "5.5.1", "Error: command not implemented")
        # RFC 3207 §4.2 / CVE-2011-0411: anything pipelined after STARTTLS
        # arrived in plaintext and must not be acted on after the handshake.
        self._compact()
        if self._in:
            log.info("{client}: discarding {n} bytes of plaintext pipelined after STARTTLS",
                     client=self.peer, n=len(self._in), service=self.service)
        self._in = b""
        self._count("starttls", True)
        self._send(220, "2.0.0", "Ready to start TLS")
        self._flush()
        self.transport.startTLS(self.server.tls_options)
        self.tls = True
        self._direct = False  # from now on bytes must go through the TLS layer
        self.helo, self.esmtp = "", False
        self._abort_writer()
        self._reset_transaction()
        self.sasl_username = self.sasl_method = ""
        return None


def _drive(coroutine, waiting):
    """Drive a started ``coroutine`` on from the Deferred it waits for; return a Deferred of its result.

    What :func:`twisted.internet.defer.ensureDeferred` does for a coroutine
    that has not started yet; here the first step has already run.
    """
    done = defer.Deferred()

    def step(result):
        # The awaited Deferred has fired: resume the coroutine with its result,
        # or raise its failure at the await (as Twisted's own driver does).
        try:
            if isinstance(result, Failure):
                next_wait = result.throwExceptionIntoGenerator(coroutine)
            else:
                next_wait = coroutine.send(result)
        except StopIteration as stop:
            done.callback(stop.value)
        except BaseException:
            done.errback()
        else:
            next_wait.addBoth(step)
        return None

    waiting.addBoth(step)
    return done


def resolve_peer_name(address):
    """Return the forward-confirmed reverse name of ``address``, or "unknown" (blocking: call in a thread)."""
    try:
        name = socket.gethostbyaddr(address)[0]
        infos = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return "unknown"
    if any(info[4][0] == address for info in infos):
        return name
    return "unknown"
