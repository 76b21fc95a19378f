# -*- test-case-name: tests.imapd.test_session -*-
"""The IMAP4rev1 protocol object: reading commands, dispatching, replying.

:class:`IMAPServer` subclasses Twisted's ``IMAP4Server`` for its line and
timeout machinery and its response helpers, but replaces its reader and
its ``<state>_<CMD>`` dispatch: a command is first collected whole, literals
included, then looked up in the one dispatch table
(:data:`mailstack.imapd.commands.COMMANDS`), checked against the session
state (RFC 3501 §3) and run as a coroutine.  Commands run one at a time, in
order; lines that arrive meanwhile are queued, and a running command may
ask for the next line itself (AUTHENTICATE responses, IDLE's ``DONE``).

Limits, enforced before memory is spent: a line longer than
``imap_max_line_length`` ends the session with ``* BYE``; a literal larger
than ``message_size_limit`` (APPEND) or ``imap_max_line_length`` (any other
command) is refused before its continuation request is sent, and a
non-synchronising one (LITERAL+) that is too large ends the session, since
its octets are already on the way (RFC 7888 §4).

An unauthenticated session is logged out after ``imapd_login_timeout``, an
authenticated one after ``imap_idle_timeout`` of silence; IDLE suspends
the latter and sends ``* OK Still here`` every
``imapd_idle_notify_interval`` instead.

Log lines (Dovecot's shape, tagged with the master.cf service name):
``imap-login: Login: user=<u>, method=PLAIN, rip=..., lip=..., TLS``,
``imap-login: Aborted login (auth failed, 1 attempts): user=<u>, ...``,
``imap(u): Logged out in=N out=N``.
"""

import collections
import socket

from twisted.internet import defer, interfaces, task
from twisted.logger import Logger
from twisted.mail.imap4 import IMAP4Server

from mailstack.imapd import commands
from mailstack.imapd.errors import Bad, IMAPError
from mailstack.imapd.syntax import LITERAL_RE, Cursor

log = Logger(namespace="mailstack.imapd")

# Output a long command (FETCH of many bodies) may leave unread by the client
# before it waits for the client to catch up, and how often it looks again.
OUTPUT_BACKLOG = 1024 * 1024
BACKLOG_POLL = 0.005


class IMAPServer(IMAP4Server):
    """One IMAP connection.

    Attributes:
        state: ``"unauth"``, ``"auth"``, ``"select"`` or ``"logout"`` (RFC 3501 §3).
        user: the authenticated user name, or None.
        account: the :class:`~mailstack.imapd.account.StoreAccount` after login.
        selected: the :class:`~mailstack.imapd.selected.SelectedMailbox`, or None.
        enabled: extensions turned on with ENABLE (RFC 5161).
        config: the service's configuration.
    """

    IDENT = b"mailstack IMAP4rev1 ready."
    state = "unauth"

    def __init__(self, factory):
        super().__init__(chal={}, contextFactory=factory.tls_options)
        self.factory = factory
        self.config = factory.config
        self.reactor = factory.reactor
        self.MAX_LENGTH = self.config["imap_max_line_length"]
        self.user = None
        self.account = None
        self.selected = None
        self.enabled = set()
        self.idling = False
        self.auth_attempts = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._command = None        # bytearray of the command being collected
        self._literal_left = 0
        self._literal_total = 0
        self._queue = collections.deque()
        self._waiter = None
        self._busy = False
        self._pumping = False
        self._closed = False

    # -- connection ---------------------------------------------------------

    def connectionMade(self):
        transport = self.transport
        try:
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            handle = getattr(transport, "getHandle", lambda: None)()
            if isinstance(handle, socket.socket):
                handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer, host = transport.getPeer(), transport.getHost()
        self.remote_ip = getattr(peer, "host", "")
        self.local_ip = getattr(host, "host", "")
        self.tls = interfaces.ISSLTransport(transport, None) is not None
        self.canStartTLS = (not self.tls and self.ctx is not None
                            and interfaces.ITLSTransport(transport, None) is not None)
        self.tags = {}
        self.setTimeout(self.config["imapd_login_timeout"])
        self.factory.session_opened(self)
        self.send_raw(b"* OK [CAPABILITY " + b" ".join(self.capability_list()) + b"] " + self.IDENT + b"\r\n")

    def connectionLost(self, reason):
        self._closed = True
        self.setTimeout(None)
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.errback(ConnectionDone())
        if self.selected is not None:
            self.selected.close()
            self.selected = None
        if self.user is not None:
            log.info("imap({user}): Disconnected: Logged out in={inb} out={outb}" if self.state != "logout"
                     else "imap({user}): Logged out in={inb} out={outb}",
                     user=self.user, inb=self.bytes_in, outb=self.bytes_out, service=self.factory.service_name)
        elif self.auth_attempts:
            self.log_login("Disconnected (auth failed, {n} attempts)".format(n=self.auth_attempts), None)
        self.factory.session_closed(self)

    def callLater(self, period, func):
        # TimeoutMixin's timer, on the injected reactor (a Clock in unit tests).
        return self.reactor.callLater(period, func)

    def timeoutConnection(self):
        self.send_raw(b"* BYE Disconnected for inactivity.\r\n")
        self.transport.loseConnection()

    @property
    def secure(self):
        """True for TLS connections and those the auth layer counts as secure."""
        return self.factory.is_secure(self.remote_ip, self.tls or self.startedTLS)

    def capability_list(self):
        """Return the capabilities for the current state, as a list of bytes."""
        return commands.capabilities(self)

    # -- output -------------------------------------------------------------

    def send_raw(self, data):
        if self._closed:
            return
        self.bytes_out += len(data)
        self.transport.write(data)

    def push(self, data):
        """Send unsolicited data (IDLE push) at once.

        Twisted buffers every write until the reactor's next turn; when ten
        thousand sessions are told about one delivery, the first would then
        wait for the whole fan-out.  On a plain TCP transport with nothing
        queued, the data goes straight to the socket; what the kernel does
        not take, and every other case, goes through the transport as usual,
        so output order is kept.
        """
        if self._closed:
            return
        transport = self.transport
        sock = getattr(transport, "socket", None)
        if (sock is not None and not getattr(transport, "dataBuffer", b"x")
                and not getattr(transport, "_tempDataBuffer", [b"x"]) and not transport.disconnecting):
            try:
                sent = sock.send(data)
            except OSError:
                sent = 0  # would block, or a broken connection the transport will notice
            self.bytes_out += sent
            data = data[sent:]
            if not data:
                return
        self.send_raw(data)

    def bye(self, text):
        """Send ``* BYE text`` and close; nothing more is sent or run after it."""
        self.send_raw(b"* BYE " + text + b"\r\n")
        self._closed = True
        self.transport.loseConnection()

    def sendLine(self, line):
        self.send_raw(line + b"\r\n")

    def untagged(self, data):
        """Send ``* data``."""
        self.send_raw(b"* " + data + b"\r\n")

    def continuation(self, data=b""):
        """Send a continuation request ``+ data``."""
        self.send_raw(b"+ " + data + b"\r\n" if data else b"+ \r\n")

    # -- input: collect whole commands, literals included ---------------------

    def dataReceived(self, data):
        self.bytes_in += len(data)
        self.resetTimeout()
        return super().dataReceived(data)

    def lineLengthExceeded(self, line):
        # RFC 7162 §4 / Dovecot: a command line over the limit ends the session.
        self.send_raw(b"* BYE Too long command line.\r\n")
        self.transport.loseConnection()

    def lineReceived(self, line):
        if self._command is None:
            self._command = bytearray()
            self._literal_total = 0
        self._command += line
        if len(self._command) - self._literal_total > self.MAX_LENGTH:
            self._command = None
            self.send_raw(b"* BYE Too long command.\r\n")
            self.transport.loseConnection()
            return
        match = LITERAL_RE.search(line)
        if match is None:
            command, self._command = bytes(self._command), None
            self._queue.append(command)
            self._pump()
            return
        size, nonsync = int(match.group(1)), bool(match.group(2))
        # Literals of APPEND carry messages; in any other command they count
        # against the line length limit, all of them together.
        limit = self.config["message_size_limit"] if self._is_append() else self.MAX_LENGTH
        self._literal_total += size
        if self._literal_total > limit:
            tag = bytes(self._command).split(b" ", 1)[0] or b"*"
            self._command = None
            if nonsync:
                self.send_raw(b"* BYE [TOOBIG] Literal too large.\r\n")
                self.transport.loseConnection()
            else:
                self.send_raw(tag + b" NO [TOOBIG] Literal of %d octets is larger than %d.\r\n" % (size, limit))
            return
        self._command += b"\r\n"
        if not nonsync:
            self.send_raw(b"+ OK\r\n")
        self._literal_left = size
        if size == 0:
            return
        self.setRawMode()

    def _is_append(self):
        head = bytes(self._command[:64]).split(b" ", 2)
        return len(head) > 1 and head[1].upper() == b"APPEND"

    def rawDataReceived(self, data):
        take = data[:self._literal_left]
        self._command += take
        self._literal_left -= len(take)
        if self._literal_left == 0:
            self.setLineMode(data[len(take):])

    # -- dispatch -----------------------------------------------------------

    def _pump(self):
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._queue and not self._closed:
                if self._waiter is not None:
                    waiter, self._waiter = self._waiter, None
                    waiter.callback(self._queue.popleft())
                    continue
                if self._busy:
                    break
                self._busy = True
                done = defer.ensureDeferred(self._execute(self._queue.popleft()))
                done.addBoth(self._finished)
        finally:
            self._pumping = False

    def _finished(self, result):
        self._busy = False
        if isinstance(result, defer.Failure) and not result.check(ConnectionDone):
            log.failure("unhandled error in IMAP command dispatch", result)
        self._pump()

    def read_line(self):
        """Return a Deferred firing with the next line the client sends (inside a running command)."""
        self._waiter = defer.Deferred()
        waiter = self._waiter
        self.reactor.callLater(0, self._pump)
        return waiter

    async def _execute(self, data):
        cursor = Cursor(data)
        try:
            tag = cursor.tag()
        except Bad:
            self.send_raw(b"* BAD Error in IMAP command: missing or invalid tag.\r\n")
            return
        try:
            cursor.sp()
            name = cursor.atom().upper()
        except Bad:
            self.send_raw(tag + b" BAD Error in IMAP command: missing command name.\r\n")
            return
        uid = False
        if name == b"UID":
            try:
                cursor.sp()
                name = cursor.atom().upper()
            except Bad:
                self.send_raw(tag + b" BAD Error in IMAP command UID: missing command.\r\n")
                return
            uid = True
        command = commands.lookup(name, uid)
        if command is None:
            self.send_raw(tag + b" BAD Error in IMAP command %s: Unknown command.\r\n" % name)
            return
        if self.state not in command.states:
            reason = commands.state_reason(command, self.state).encode()
            self.send_raw(tag + b" BAD Error in IMAP command %s: %s\r\n" % (name, reason))
            return
        try:
            text = await command.handler(self, tag, cursor, uid)
            if text is None:
                return  # the handler replied itself (LOGOUT, a failed STARTTLS...)
            if self.selected is not None and command.sync:
                self.selected.send_updates(self, expunges=command.expunge_ok or uid)
            self.send_raw(tag + b" OK " + text + b"\r\n")
        except IMAPError as err:
            self.send_raw(tag + b" " + err.reply() + b"\r\n")
        except ConnectionDone:
            raise
        except Exception:
            log.failure("imap({user}): internal error in {command}", user=self.user, command=name.decode())
            self.send_raw(tag + b" NO [SERVERBUG] Internal error occurred. Refer to server log for more information.\r\n")

    # -- helpers for handlers ------------------------------------------------

    def log_login(self, event, method, extra=""):
        """Log a Dovecot-style ``imap-login:`` line."""
        parts = ["user=<%s>" % (self.user or self.login_name or "")]
        if method:
            parts.append("method=%s" % method)
        parts += ["rip=%s" % self.remote_ip, "lip=%s" % self.local_ip]
        if self.tls or self.startedTLS:
            parts.append("TLS")
        if extra:
            parts.append(extra)
        log.info("imap-login: {event}: {details}", event=event, details=", ".join(parts),
                 service=self.factory.service_name)

    login_name = None

    def discard_pipelined(self):
        """Forget input received but not yet run (after STARTTLS, RFC 3501 §6.2.1)."""
        self._queue.clear()
        self._command = None
        self._buffer = b""

    def deselect(self):
        """Leave the selected mailbox (back to the authenticated state)."""
        if self.selected is not None:
            self.selected.close()
            self.selected = None
        self.state = "auth"

    def mailbox_changed(self):
        """Store listener hook: push queued changes at once while idling (RFC 2177)."""
        if self.idling and self.selected is not None and not self._closed:
            self.selected.send_updates(self, expunges=True, write=self.push)

    async def poll(self, send=False):
        """Sync the selected folder with the disk so that others' changes get queued (NOOP, CHECK, IDLE)."""
        selected = self.selected
        if selected is None:
            return
        try:
            await self.factory.store.run(selected.folder.sync)
        except Exception as err:  # a vanished folder is reported by the next command
            log.debug("imap({user}): sync failed: {error}", user=self.user, error=err)
        if send and self.selected is selected:
            selected.send_updates(self, expunges=True)

    async def pause(self):
        """Wait between batches of a long command's output.

        Waits for the next reactor turn, so that other sessions get their
        turn; while the client has more than :data:`OUTPUT_BACKLOG` bytes of
        what was sent left unread, waits (looking again every
        :data:`BACKLOG_POLL` seconds) until it has read them or the
        connection is gone: a slow reader makes the command wait instead of
        the server buffering a whole mailbox in memory.
        """
        await task.deferLater(self.reactor, 0, lambda: None)
        while not self._closed and self.output_buffered() > OUTPUT_BACKLOG:
            await task.deferLater(self.reactor, BACKLOG_POLL, lambda: None)

    def output_buffered(self):
        """Bytes written to the transport (and any TLS layer) that the kernel has not taken yet."""
        total, transport = 0, self.transport
        for _ in range(4):  # protocol -> TLS layer -> TCP connection
            if transport is None:
                break
            total += len(getattr(transport, "dataBuffer", b"") or b"") + getattr(transport, "_tempDataLen", 0)
            total += sum(len(chunk) for chunk in getattr(transport, "_appSendBuffer", ()) or ())
            transport = getattr(transport, "transport", None)
        return total

    def logged_in(self, user, account, method):
        """Switch to the authenticated state for ``user``."""
        self.user = user
        self.account = account
        self.state = "auth"
        self.setTimeout(self.config["imap_idle_timeout"])
        self.log_login("Login", method)


class ConnectionDone(Exception):
    """The connection closed while a command waited for client input."""

