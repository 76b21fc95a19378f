# -*- test-case-name: tests.pop3d.test_commands -*-
"""The POP3 server protocol: line handling, states, dispatch, CAPA, QUIT, logs.

A lean protocol of our own rather than ``twisted.mail.pop3.POP3``: the
stock one has no STLS, no RFC 2449 response codes and no SASL beyond
challenge/response, checks passwords through a synchronous cred portal,
sends every multi-line reply in many small writes with Nagle's algorithm on
(23 messages/s on RETR), and has no notion of a session lock.  What it does
well (state-based dispatch, pipelining) is kept.

States (RFC 1939 §3): AUTHORIZATION until a login succeeds, TRANSACTION
after, UPDATE when QUIT commits the deletions.  The commands of each state
are listed in one table, :data:`COMMANDS`; their implementations live in
:mod:`.login` (AUTHORIZATION) and :mod:`.transaction` (TRANSACTION).

Input: commands may be pipelined (RFC 2449 §6.6).  Lines are taken one at a
time; a command that has to wait (a password check, a message being
streamed, the deletions at QUIT) holds back the following lines until it
is done, and a reply that fills the output buffer pauses command processing
until the client has read it (the protocol is the transport's streaming
producer).  After STLS every byte received before the TLS handshake is
thrown away (RFC 2595 §3.1: no command injection across STLS).

Output: replies to one command go out in one write, and every connection
has ``TCP_NODELAY`` set, so a multi-line reply never waits for a delayed ACK.

Logs (Dovecot's lines, under the master.cf service's name)::

    pop3-login: Login: user=<joe@example.com>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, TLS
    pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<joe>, method=PLAIN, rip=..., lip=...
    pop3(joe@example.com): Disconnected: Logged out top=0/0, retr=1/1234, del=1/3, size=5678

Parameters read (through :class:`POP3Settings`): ``mail_name``,
``myhostname``, ``ssl_cert``/``ssl_key`` (STLS), ``disable_plaintext_auth``,
``pop3_client_timeout``, ``pop3_uidl_format``.

RFCs: 1939 (POP3), 2449 (CAPA, response codes), 2595 (STLS), 3206 (SYS and
AUTH response codes), 5034 (SASL AUTH).
"""

import base64
import os
import time
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from mailstack.pop3d import login, transaction
from mailstack.pop3d.errors import Reply

log = Logger(namespace="mailstack.pop3d")

AUTHORIZATION, TRANSACTION, UPDATE = "AUTHORIZATION", "TRANSACTION", "UPDATE"

# RFC 2449 §4 allows 255 octets for a command line; SASL responses (RFC 5034 §4)
# may be longer, so the limit is generous but bounded.
MAX_LINE = 16 * 1024
# Stop reading from a client that keeps sending while a command is running.
MAX_PENDING_INPUT = 64 * 1024
MAX_BAD_COMMANDS = 20

# state -> command -> handler name; handlers are methods of POP3Server.
COMMANDS = {
    AUTHORIZATION: {
        "CAPA": "do_CAPA",
        "USER": "do_USER",
        "PASS": "do_PASS",
        "APOP": "do_APOP",
        "AUTH": "do_AUTH",
        "STLS": "do_STLS",
        "QUIT": "do_QUIT",
    },
    TRANSACTION: {
        "CAPA": "do_CAPA",
        "STAT": "do_STAT",
        "LIST": "do_LIST",
        "UIDL": "do_UIDL",
        "RETR": "do_RETR",
        "TOP": "do_TOP",
        "DELE": "do_DELE",
        "RSET": "do_RSET",
        "NOOP": "do_NOOP",
        "QUIT": "do_QUIT",
    },
}


@dataclass(frozen=True)
class POP3Settings:
    """What a POP3 service needs from its configuration.

    Attributes:
        service: the master.cf service name (log tag).
        greeting: the text after ``+OK`` in the greeting.
        tls_options: server TLS options for STLS, or None when TLS is not configured.
        plaintext_insecure: True when ``disable_plaintext_auth = no``.
        idle_timeout: seconds of inactivity before the session is closed.
        uidl_format: a :class:`~mailstack.pop3d.uidl.UIDLFormat`.
        apop: offer APOP (``pop3d_enable_apop``).
        hostname: this host's name, in the APOP timestamp.
    """

    service: str
    greeting: str
    tls_options: object
    plaintext_insecure: bool
    idle_timeout: float
    uidl_format: object
    apop: bool = False
    hostname: str = "localhost"


def _ip(address):
    host = getattr(address, "host", "") or ""
    # An IPv4 client on a dual-stack listener shows as ::ffff:a.b.c.d.
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def _session_id():
    return base64.b64encode(os.urandom(9), b"+/").decode()


@implementer(IPushProducer)
class POP3Server(login.AuthorizationCommands, transaction.TransactionCommands, Protocol):
    """One POP3 connection.

    Args:
        factory: the :class:`POP3Factory` (settings, auth service, mailbox opener, locks, clock).
    """

    def __init__(self, factory):
        self.factory = factory
        self.settings = factory.settings
        self.clock = factory.clock
        self.state = AUTHORIZATION
        self.user = ""
        self.tls = False
        self.secure = False
        self.rip = self.lip = ""
        self.session = _session_id()
        self._buffer = b""
        self._busy = False
        self._held = False
        self._processing = False
        self._output_paused = False
        self._input_paused = False
        self._closing = False
        self._producer_registered = None
        self._direct = False
        self._idle_call = None
        self._bad_commands = 0
        self._auth_failures = 0
        self._started = 0.0
        self._disconnect_reason = "Disconnected: Connection closed"
        self.login_init()
        self.transaction_init()

    # -- connection -------------------------------------------------------

    def connectionMade(self):
        transport = self.transport
        self._started = time.monotonic()
        try:
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass  # not TCP (a UNIX socket, or an in-memory test transport)
        self.rip, self.lip = _ip(transport.getPeer()), _ip(transport.getHost())
        self.tls = ISSLTransport.providedBy(transport)
        # Direct socket writes only on a plain TCP transport of the reactor (see write()).
        self._direct = not self.tls and hasattr(transport, "_tempDataBuffer") and hasattr(transport, "dataBuffer")
        self.update_security()
        transport.registerProducer(self, True)
        self._producer_registered = True
        self._idle_call = self.clock.callLater(self.settings.idle_timeout, self._idle_timeout)
        self.send("+OK " + self.greeting())

    def update_security(self):
        """Recompute :attr:`secure` after a change of :attr:`tls`."""
        self.secure = self.factory.auth.is_secure_connection(self.rip, self.tls)

    def connectionLost(self, reason=None):
        self._closing = True
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        if self.state == AUTHORIZATION:
            self.log_login_abort()
        else:
            self.log_logout(self._disconnect_reason)
        self.transaction_close()

    def _idle_timeout(self):
        self._idle_call = None
        self._disconnect_reason = "Disconnected for inactivity"
        self.send("-ERR Disconnected for inactivity.")
        self.close()

    def close(self):
        """Stop reading commands and close once the pending output is sent."""
        if self._closing and self._producer_registered is False:
            return
        self._closing = True
        if self._producer_registered:
            # A TLS transport closes only once no producer is registered.
            self._producer_registered = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    # -- IPushProducer: the transport's output buffer drives command processing

    def pauseProducing(self):
        self._output_paused = True

    def resumeProducing(self):
        self._output_paused = False
        if self._idle_call is not None:
            self._idle_call.reset(self.settings.idle_timeout)
        if self.pump_output():
            self._process()

    def stopProducing(self):
        self._closing = True

    # -- output -----------------------------------------------------------

    def send(self, line):
        """Send one reply line (str or bytes) with its CRLF."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.write(line + b"\r\n")

    def send_multiline(self, first, lines):
        """Send ``first`` and the already stuffed ``lines`` (bytes without CRLF) as one multi-line reply."""
        out = [first.encode() if isinstance(first, str) else first]
        out.extend(lines)
        out.append(b".")
        out.append(b"")
        self.write(b"\r\n".join(out))

    def write(self, data):
        """Write reply bytes, straight to the socket when nothing is queued before them.

        Twisted's ``write`` always goes through the reactor: it registers the
        socket for writing and sends on the next loop turn, two ``epoll_ctl``
        calls and a turn per reply.  A client that waits for each reply (every
        RETR of fetchmail) leaves the socket buffer empty, so the reply is
        sent at once (as smtpd does).  This needs a plain TCP transport
        (``socket``, ``dataBuffer``); TLS and anything else, a partial send,
        or data Twisted still holds take the normal path, which keeps the order.
        """
        transport = self.transport
        sock = getattr(transport, "socket", None)
        if (self._direct and sock is not None and not transport.dataBuffer
                and not transport._tempDataBuffer and not transport.disconnecting):
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # Twisted's own write path sees and reports the error
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    # -- input ------------------------------------------------------------

    def dataReceived(self, data):
        if self._closing:
            return
        self._buffer += data
        if (self._busy or self._held) and len(self._buffer) > MAX_PENDING_INPUT and not self._input_paused:
            self._input_paused = True
            self.transport.pauseProducing()
        self._process()

    def discard_input(self):
        """Forget every byte received so far (used by STLS)."""
        self._buffer = b""

    def _process(self):
        if self._processing:
            return
        self._processing = True
        try:
            while not (self._busy or self._held or self._output_paused or self._closing):
                line, sep, rest = self._buffer.partition(b"\n")
                if not sep:
                    if len(self._buffer) > MAX_LINE:
                        self.send("-ERR Input line too long.")
                        self.close()
                    break
                self._buffer = rest
                if self._idle_call is not None:
                    self._idle_call.reset(self.settings.idle_timeout)
                self._line(line[:-1] if line.endswith(b"\r") else line)
            if self._input_paused and not (self._busy or self._held) and len(self._buffer) <= MAX_PENDING_INPUT:
                self._input_paused = False
                self.transport.resumeProducing()
        finally:
            self._processing = False

    def _line(self, line):
        if len(line) > MAX_LINE:
            self.send("-ERR Input line too long.")
            self.close()
            return
        if self.sasl_pending():
            self.run(self.sasl_response(line))
            return
        verb, _, args = line.partition(b" ")
        try:
            command = verb.decode("ascii").upper()
            args = args.decode("utf-8")
        except UnicodeDecodeError:
            command, args = "", ""
        handler = COMMANDS.get(self.state, {}).get(command)
        if handler is None:
            self._bad_command(command)
            return
        try:
            result = getattr(self, handler)(args)
        except Reply as err:
            self.send(err.line)
            return
        self.run(result)

    def _bad_command(self, command):
        self._bad_commands += 1
        if self._bad_commands >= MAX_BAD_COMMANDS:
            self.send("-ERR Too many bad commands.")
            self.close()
        elif command and command in COMMANDS[TRANSACTION]:
            self.send("-ERR Unknown command in this state: %s" % command)
        else:
            self.send("-ERR Unknown command: %s" % (command[:40] or "(empty)"))

    def run(self, result):
        """Finish a command: ``result`` is None, or an awaitable that holds back the next lines."""
        if result is None:
            return
        self._busy = True
        deferred = defer.ensureDeferred(result)
        deferred.addErrback(self._command_failed)
        deferred.addBoth(self._command_done)

    def _command_failed(self, failure):
        if failure.check(Reply):
            self.send(failure.value.line)
            return None
        if self._closing:
            return None
        log.failure("pop3({user}): internal error", failure, user=self.user or "-",
                    service=self.settings.service)
        self.send("-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.")
        return None

    def _command_done(self, _):
        self._busy = False
        if not self._closing:
            self._process()

    def hold(self):
        """Hold back the next command lines until :meth:`release` (used while streaming)."""
        self._held = True

    def release(self):
        """Let command processing go on after :meth:`hold` (the caller resumes processing)."""
        self._held = False

    @property
    def output_paused(self):
        """True while the transport asks us to stop writing."""
        return self._output_paused

    # -- commands valid in every state -------------------------------------

    def greeting(self):
        text = self.settings.greeting
        if self.apop_timestamp:
            text += " " + self.apop_timestamp
        return text

    def do_CAPA(self, args):
        """RFC 2449 §5: the capabilities of the current state."""
        caps = [b"CAPA", b"TOP", b"UIDL", b"RESP-CODES", b"PIPELINING", b"AUTH-RESP-CODE"]
        if self.state == AUTHORIZATION:
            if self.plaintext_allowed():
                caps.append(b"USER")
            mechanisms = self.factory.auth.mechanisms(self.secure)
            if mechanisms:
                caps.append(("SASL " + " ".join(mechanisms)).encode("ascii"))
            if self.settings.tls_options is not None and not self.tls:
                caps.append(b"STLS")
        caps.append(b"IMPLEMENTATION mailstack")
        self.send_multiline("+OK Capability list follows", caps)

    def do_QUIT(self, args):
        """RFC 1939 §6 and §5: end the session; in TRANSACTION, commit deletions (UPDATE state)."""
        if self.state != TRANSACTION:
            self.send("+OK Logging out.")
            self.close()
            return None
        return self.update()

    def log_event(self, text, **fields):
        """Log ``text`` (a twisted.logger format) under the service's tag."""
        log.info(text, service=self.settings.service, **fields)


class POP3Factory(Factory):
    """Builds :class:`POP3Server` protocols for one master.cf service.

    Args:
        settings: :class:`POP3Settings`.
        auth: the process's :class:`~mailstack.auth.service.AuthService`.
        mailboxes: opens a user's maildrop (:class:`~mailstack.pop3d.maildrop.MaildropOpener`).
        locks: the process's :class:`~mailstack.pop3d.lock.SessionLocks`.
        clock: an ``IReactorTime`` (the reactor, or a ``task.Clock`` in tests).
    """

    noisy = False

    def __init__(self, settings, auth, mailboxes, locks, clock):
        self.settings = settings
        self.auth = auth
        self.mailboxes = mailboxes
        self.locks = locks
        self.clock = clock

    def buildProtocol(self, addr):
        return POP3Server(self)
