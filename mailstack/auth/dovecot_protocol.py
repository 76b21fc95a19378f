# -*- test-case-name: tests.auth.test_socket -*-
"""The server side of Dovecot's authentication protocol, version 1.2.

This is what Postfix's ``smtpd_sasl_type = dovecot`` client (Postfix
``src/xsasl/xsasl_dovecot_server.c``) and Exim's ``dovecot`` authenticator
speak to Dovecot's auth process; mailstack answers it with its own
:class:`~mailstack.auth.service.AuthService`, so a real Postfix can
authenticate its SMTP clients against mailstack's passdb.

The protocol (Dovecot ``doc/auth-protocol.txt``) is line based: one
command a line, ending in LF, fields separated by TAB.  Required fields
come first; optional ones are ``name=value`` pairs or bare booleans, and
unknown ones are ignored.  Both sides greet at once::

    S: VERSION 1 2
    S: MECH PLAIN plaintext           (one per mechanism, with its flags)
    S: SPID <server pid>
    S: CUID <connection number>
    S: COOKIE <128-bit hex>
    S: DONE
    C: VERSION 1 <minor>              (the major version must be 1)
    C: CPID <client pid>

then the client starts any number of concurrent requests, each with its
own 32-bit id::

    C: AUTH <id> <MECH> service=smtp [nologin] [lip=..] [rip=..] [secured]
            [valid-client-cert] [final-resp-ok] [resp=<base64>]
    S: CONT <id> <base64 challenge>   C: CONT <id> <base64 response>
    S: OK <id> user=<name> [resp=<base64 final data>]
    S: FAIL <id> [user=<name>] [code=temp_fail temp] [reason=<text>]

``resp=`` must be the last field (anything after it is ignored); an empty
``resp=`` means "no initial response" and ``resp==`` an empty one.  A
mechanism's final server data on success (SCRAM's ``v=...``) goes into
``OK``'s ``resp=`` only when the client said ``final-resp-ok``; otherwise
it is sent as one more ``CONT`` and ``OK`` follows the client's (empty)
answer, as Dovecot does for Postfix.

Replies follow Dovecot 2.3's own auth process (``tests/auth/test_dovecot_compat.py``
runs the same conversations against both): the mechanism flags, ``FAIL <id>
reason=Authentication request timed out`` for a ``CONT`` to an unknown id,
``code=invalid_base64`` for bad base64, SCRAM's final data.  A
client that breaks the protocol (wrong major version, a command before the
handshake, an unknown command, a duplicate or non-numeric id, an
unadvertised mechanism, an overlong line) is logged and disconnected, like
Dovecot does; it never gets a traceback.  An unexpected exception in the
auth service becomes a temporary ``FAIL`` plus one logged traceback.

What the protocol's fields become in the
:class:`~mailstack.auth.service.AuthRequest`: ``service`` → service,
``rip``/``lip`` → remote_ip/local_ip, ``secured`` → secure (together with
:meth:`AuthService.is_secure_connection`: loopback and
``login_trusted_networks`` count as secure too).  ``valid-client-cert`` is
passed on when the request type has a field for it.  Failure delays are
the auth service's business; requests are independent, so a slow failure
never holds up another request on the same connection.

The server advertises ``AuthService.mechanisms(secure=True)``: the auth
client (Postfix) decides on its own whether to offer AUTH before TLS
(``smtpd_tls_auth_only``).  The auth service still applies
``disable_plaintext_auth`` to each request, as it does for IMAP and POP3:
a plaintext mechanism for a client that is neither on TLS nor on loopback
nor in ``login_trusted_networks`` gets ``FAIL <id> reason=Plaintext
authentication disallowed on non-secure (SSL/TLS) connections``, which
Postfix passes on in its 535 reply.  (Dovecot's auth process leaves that
check to its login processes; run the auth service with ``-o
disable_plaintext_auth=no`` in master.cf to leave it to Postfix alone.)

Not implemented: the master side (``REQUEST``/``USER`` on Dovecot's
``auth-master`` socket), which Postfix does not use.
"""

import base64
import binascii
import dataclasses
import os

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from mailstack.auth.service import AuthRequest, UnknownMechanism

MAJOR_VERSION = 1
MINOR_VERSION = 2

# Security flags per mechanism, as Dovecot 2.3 announces them.
MECHANISM_FLAGS = {
    "PLAIN": ("plaintext",),
    "LOGIN": ("plaintext",),
    "CRAM-MD5": ("dictionary", "active"),
    "DIGEST-MD5": ("dictionary", "active", "mutual-auth"),
    "SCRAM-SHA-1": ("mutual-auth",),
    "SCRAM-SHA-1-PLUS": ("mutual-auth",),
    "SCRAM-SHA-256": ("mutual-auth",),
    "SCRAM-SHA-256-PLUS": ("mutual-auth",),
    "ANONYMOUS": ("anonymous",),
    "APOP": ("private", "dictionary", "active"),
    "EXTERNAL": (),
    "XOAUTH2": ("plaintext",),
    "OAUTHBEARER": ("plaintext",),
}

# Dovecot's limit for one line from an auth client (AUTH_CLIENT_MAX_LINE_LENGTH).
MAX_LINE_LENGTH = 16384
# Requests waiting for the client's next CONT are forgotten after this long.
REQUEST_TIMEOUT = 60.0
# More unfinished requests than this on one connection is abuse, not concurrency.
MAX_PENDING_REQUESTS = 1024

_TEMP_FAIL_REASON = "Temporary authentication failure, try again later"
_PLAINTEXT_REFUSED = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections"

log = Logger(namespace="mailstack.auth")


class ProtocolError(Exception):
    """The auth client broke the protocol; the connection is dropped."""


def tab_escape(text):
    """Escape TAB, LF, CR and \\001 the way Dovecot's ``str_append_tabescaped`` does."""
    return (text.replace("\x01", "\x011").replace("\t", "\x01t")
            .replace("\n", "\x01n").replace("\r", "\x01r"))


def tab_unescape(text):
    """Undo :func:`tab_escape`."""
    if "\x01" not in text:
        return text
    out, i = [], 0
    table = {"1": "\x01", "t": "\t", "n": "\n", "r": "\r", "0": "\x00"}
    while i < len(text):
        char = text[i]
        if char == "\x01" and i + 1 < len(text):
            out.append(table.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def decode_base64(data):
    """Decode a protocol base64 field strictly; ``=`` alone is the empty string.

    Raises:
        ValueError: when ``data`` is not valid base64.
    """
    if data == "=":
        return b""
    try:
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("invalid base64") from None


def encode_base64(data):
    """Return ``data`` (bytes) as protocol base64 text."""
    return base64.b64encode(data).decode("ascii")


def parse_options(fields):
    """Return the optional fields of a command as a dict.

    Booleans map to True, ``name=value`` to the unescaped value.  Parsing
    stops after ``resp=`` (Dovecot: it must be last, anything after it is
    ignored so that unfiltered client data cannot inject fields).
    """
    options = {}
    for field in fields:
        name, equals, value = field.partition("=")
        if not equals:
            options[name] = True
            continue
        if name == "resp":
            options[name] = value
            break
        options[name] = tab_unescape(value)
    return options


def greeting_lines(mechanisms, spid, cuid, cookie):
    """Return the server handshake lines (without LF) for ``mechanisms``."""
    lines = ["VERSION\t%d\t%d" % (MAJOR_VERSION, MINOR_VERSION)]
    for name in mechanisms:
        lines.append("\t".join(("MECH", name) + MECHANISM_FLAGS.get(name.upper(), ())))
    lines += ["SPID\t%d" % spid, "CUID\t%d" % cuid, "COOKIE\t%s" % cookie, "DONE"]
    return lines


class _Request:
    """One AUTH request in progress on a connection."""

    def __init__(self, request_id, mechanism, session, request):
        self.id = request_id
        self.mechanism = mechanism
        self.session = session
        self.request = request
        self.busy = False           # a step is running; the client must wait
        self.final_ok = False       # success data was sent as CONT; OK follows the next CONT
        self.final_resp_ok = False  # the client takes success data in OK's resp=
        self.tls = False            # the auth client said "secured" (TLS to its client)
        self.user = ""
        self.timeout = None


class DovecotAuthServer(LineOnlyReceiver):
    """One auth client connection (e.g. one Postfix smtpd process).

    Attributes:
        cuid: this connection's number, unique within the factory.
        client_pid: the client's CPID once the handshake is done, else None.
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE_LENGTH

    def __init__(self, factory, cuid):
        self.factory = factory
        self.cuid = cuid
        self.client_pid = None
        self._version_seen = False
        self._requests = {}
        self._closed = False
        self._mechanisms = []

    # -- connection ------------------------------------------------------

    def connectionMade(self):
        self._mechanisms = self.factory.auth.mechanisms(secure=True)
        cookie = os.urandom(16).hex()
        self._send_lines(greeting_lines(self._mechanisms, self.factory.spid, self.cuid, cookie))
        log.debug("auth client connected (cuid={cuid})", cuid=self.cuid)

    def connectionLost(self, reason=protocol.connectionDone):
        self._closed = True
        for pending in self._requests.values():
            if pending.timeout is not None and pending.timeout.active():
                pending.timeout.cancel()
        self._requests.clear()
        log.debug("auth client disconnected (cuid={cuid})", cuid=self.cuid)

    def lineLengthExceeded(self, line):
        self._drop("sent a line longer than %d bytes" % self.MAX_LENGTH)

    def _drop(self, why):
        if self._closed:
            return
        log.warn("BUG: Authentication client {client} {why}; disconnecting",
                 client=self._client_name(), why=why)
        self._closed = True
        self.transport.loseConnection()

    def _client_name(self):
        if self.client_pid is None:
            return "cuid=%d" % self.cuid
        return "%s (cuid=%d)" % (self.client_pid, self.cuid)

    def _send_lines(self, lines):
        if not self._closed:
            self.transport.write(b"".join(line.encode("utf-8") + b"\n" for line in lines))

    # -- dispatch ----------------------------------------------------------

    def lineReceived(self, line):
        if self._closed:
            return
        try:
            text = line.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            self._drop("sent a line that is not UTF-8")
            return
        fields = text.split("\t")
        command = fields[0]
        handler = self._COMMANDS.get(command)
        try:
            if handler is None:
                raise ProtocolError("sent unknown command %r" % command[:40])
            if command != "VERSION" and not self._version_seen:
                raise ProtocolError("sent %s before VERSION" % command)
            if command not in ("VERSION", "CPID") and self.client_pid is None:
                raise ProtocolError("sent %s before CPID" % command)
            handler(self, fields[1:])
        except ProtocolError as err:
            self._drop(str(err))

    def _handle_version(self, args):
        if self._version_seen:
            raise ProtocolError("sent VERSION twice")
        if len(args) < 2 or not args[0].isdigit():
            raise ProtocolError("sent a malformed VERSION")
        if int(args[0]) != MAJOR_VERSION:
            raise ProtocolError("is not compatible with this server (protocol version %s, not %d)"
                                % (args[0], MAJOR_VERSION))
        self._version_seen = True

    def _handle_cpid(self, args):
        if self.client_pid is not None:
            raise ProtocolError("sent CPID twice")
        if len(args) < 1 or not args[0].isdigit():
            raise ProtocolError("sent a malformed CPID")
        self.client_pid = int(args[0])

    def _handle_auth(self, args):
        if len(args) < 2:
            raise ProtocolError("sent a malformed AUTH")
        request_id = _parse_id(args[0])
        if request_id in self._requests:
            raise ProtocolError("sent a duplicate request id %d" % request_id)
        if len(self._requests) >= MAX_PENDING_REQUESTS:
            raise ProtocolError("has more than %d unfinished requests" % MAX_PENDING_REQUESTS)
        mechanism = args[1].upper()
        options = parse_options(args[2:])
        service = options.get("service")
        if not isinstance(service, str) or not service:
            raise ProtocolError("didn't specify service for request %d" % request_id)
        if mechanism not in self._mechanisms:
            raise ProtocolError("requested unsupported authentication mechanism %s" % mechanism[:40])
        initial = options.get("resp")
        if initial is True or initial == "":
            initial = None   # "resp" without data: no initial response (Dovecot 2.3 does the same)
        if initial is not None:
            try:
                initial = decode_base64(initial)
            except ValueError:
                self._send_lines(["FAIL\t%d\tcode=invalid_base64\treason=Invalid base64 data in initial response"
                                  % request_id])
                return
        request = self._auth_request(request_id, service, options)
        try:
            session = self.factory.auth.start(mechanism, request)
        except UnknownMechanism:
            # Advertised, but not for this request: a plaintext mechanism on a connection that is
            # neither TLS nor trusted while disable_plaintext_auth = yes.
            log.info("{protocol}(?,{rip},<{session}>): {mechanism} refused: {reason}", protocol=service,
                     rip=request.remote_ip, session=request.session, mechanism=mechanism,
                     reason=_PLAINTEXT_REFUSED)
            self._send_lines(["FAIL\t%d\treason=%s" % (request_id, _PLAINTEXT_REFUSED)])
            return
        pending = self._requests[request_id] = _Request(request_id, mechanism, session, request)
        pending.final_resp_ok = options.get("final-resp-ok") is True
        pending.tls = options.get("secured") is True
        self._run_step(pending, initial)

    def _handle_cont(self, args):
        if len(args) < 1:
            raise ProtocolError("sent a malformed CONT")
        request_id = _parse_id(args[0])
        pending = self._requests.get(request_id)
        if pending is None:
            self._send_lines(["FAIL\t%d\treason=Authentication request timed out" % request_id])
            return
        if pending.busy:
            raise ProtocolError("sent CONT for request %d while it was being processed" % request_id)
        if pending.timeout is not None and pending.timeout.active():
            pending.timeout.cancel()
        try:
            data = decode_base64(args[1] if len(args) > 1 else "")
        except ValueError:
            self._finish(pending, "FAIL\t%d\tcode=invalid_base64\treason=Invalid base64 data in continued response"
                         % request_id)
            return
        if pending.final_ok:
            # The client acknowledged the final server data we sent as CONT.
            self._finish(pending, self._ok_line(pending, b""))
            return
        self._run_step(pending, data)

    _COMMANDS = {"VERSION": _handle_version, "CPID": _handle_cpid, "AUTH": _handle_auth,
                 "CONT": _handle_cont}

    # -- requests ----------------------------------------------------------

    def _auth_request(self, request_id, service, options):
        remote_ip = _text(options.get("rip"))
        local_ip = _text(options.get("lip"))
        tls = options.get("secured") is True
        secure = tls or bool(remote_ip and self.factory.auth.is_secure_connection(remote_ip, tls))
        values = {"service": service, "remote_ip": remote_ip, "local_ip": local_ip, "secure": bool(secure),
                  "session": _text(options.get("session")) or "%d.%d" % (self.cuid, request_id)}
        if "valid_client_cert" in self.factory.request_fields:
            values["valid_client_cert"] = options.get("valid-client-cert") is True
        return AuthRequest(**values)

    def _run_step(self, pending, data):
        pending.busy = True
        d = defer.ensureDeferred(pending.session.step(data))
        d.addCallbacks(self._step_done, self._step_failed, callbackArgs=(pending,), errbackArgs=(pending,))

    def _step_done(self, step, pending):
        pending.busy = False
        if self._closed or self._requests.get(pending.id) is not pending:
            return
        if step.user:
            pending.user = step.user
        if step.kind == "continue":
            self._send_lines(["CONT\t%d\t%s" % (pending.id, encode_base64(step.challenge))])
            pending.timeout = self.factory.reactor.callLater(REQUEST_TIMEOUT, self._timed_out, pending)
        elif step.kind == "success":
            if step.challenge and not pending.final_resp_ok:
                # The client cannot take data with OK: send it as CONT, OK follows its answer.
                pending.final_ok = True
                self._send_lines(["CONT\t%d\t%s" % (pending.id, encode_base64(step.challenge))])
                pending.timeout = self.factory.reactor.callLater(REQUEST_TIMEOUT, self._timed_out, pending)
                return
            self._finish(pending, self._ok_line(pending, step.challenge))
        else:
            self._log_failure(pending, step.reason, step.temporary)
            self._finish(pending, self._fail_line(pending, step.temporary))

    def _step_failed(self, failure, pending):
        pending.busy = False
        log.failure("auth service error for {mechanism} request {id} (cuid={cuid})", failure,
                    mechanism=pending.mechanism, id=pending.id, cuid=self.cuid)
        if self._closed or self._requests.get(pending.id) is not pending:
            return
        self._finish(pending, self._fail_line(pending, temporary=True))

    def _ok_line(self, pending, data):
        fields = ["OK", str(pending.id), "user=" + tab_escape(pending.user)]
        if data:
            fields.append("resp=" + encode_base64(data))
        self._log_success(pending)
        return "\t".join(fields)

    def _fail_line(self, pending, temporary):
        fields = ["FAIL", str(pending.id)]
        if pending.user:
            fields.append("user=" + tab_escape(pending.user))
        if temporary:
            fields += ["code=temp_fail", "temp", "reason=" + _TEMP_FAIL_REASON]
        return "\t".join(fields)

    def _finish(self, pending, line):
        if pending.timeout is not None and pending.timeout.active():
            pending.timeout.cancel()
        self._requests.pop(pending.id, None)
        self._send_lines([line])

    def _timed_out(self, pending):
        if self._requests.get(pending.id) is pending:
            del self._requests[pending.id]
            log.info("{protocol}({user},{rip},<{session}>): {mechanism} request timed out waiting for the client",
                     protocol=pending.request.service, user=pending.user or "?", rip=pending.request.remote_ip,
                     session=pending.request.session, mechanism=pending.mechanism)

    def _log_success(self, pending):
        request = pending.request
        log.info("{protocol}({user},{rip},<{session}>): authenticated, method={mechanism}, lip={lip}{tls}",
                 protocol=request.service, user=pending.user, rip=request.remote_ip, session=request.session,
                 mechanism=pending.mechanism, lip=request.local_ip, tls=", TLS" if pending.tls else "")

    def _log_failure(self, pending, reason, temporary):
        # The auth service has logged the reason already (at info with auth_verbose = yes,
        # as an error for internal failures); this line only ties it to the request id.
        request = pending.request
        log.debug("{protocol}({user},{rip},<{session}>): {mechanism} authentication failed{temp}: {reason}",
                  protocol=request.service, user=pending.user or "?", rip=request.remote_ip,
                  session=request.session, mechanism=pending.mechanism,
                  temp=" (temporary)" if temporary else "", reason=reason or "unknown reason")


def _parse_id(text):
    if not text.isdigit() or int(text) > 0xFFFFFFFF:
        raise ProtocolError("sent a bad request id %r" % text[:20])
    return int(text)


def _text(value):
    return value if isinstance(value, str) else ""


class DovecotAuthFactory(protocol.Factory):
    """Makes a :class:`DovecotAuthServer` per auth client connection.

    Args:
        auth: the :class:`~mailstack.auth.service.AuthService`.
        reactor: the reactor, for request timeouts.
        spid: the server process id announced in SPID (default: this process).
    """

    noisy = False

    def __init__(self, auth, reactor, spid=None):
        self.auth = auth
        self.reactor = reactor
        self.spid = os.getpid() if spid is None else spid
        self.request_fields = frozenset(f.name for f in dataclasses.fields(AuthRequest))
        self._next_cuid = 1

    def buildProtocol(self, addr):
        cuid = self._next_cuid
        self._next_cuid += 1
        proto = DovecotAuthServer(self, cuid)
        return proto
