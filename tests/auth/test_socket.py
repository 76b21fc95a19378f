"""The Dovecot auth protocol server: handshake, conversations, failures, protocol errors, the master.cf service.

Protocol tests drive :class:`DovecotAuthServer` over a ``StringTransport``
with the real :class:`AuthService` (passwd-file, synchronous "threads", a
``Clock`` for failure delays and request timeouts); the service tests
listen on real Unix and TCP sockets through master.cf.
"""

import base64
import os
import re
import stat

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineOnlyReceiver

from mailstack import app
from mailstack.auth import dovecot_protocol as dp
from mailstack.auth.mechs.client import client_for
from mailstack.auth.request import failure
from mailstack.auth.schemes import registry as schemes
from mailstack.config.maincf import ConfigError
from tests.auth.helpers import captured_log, service, write_config
from tests.conftest import run_cli

PASSWD = "joe@example.com:{PLAIN}secret:1000:1000::/home/joe::\nann@example.com:%s:1001:1001::/home/ann::\n"
MECHS = "auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256\n"
HANDSHAKE = "VERSION\t1\t0\nCPID\t4242\n"


def b64(data):
    return base64.b64encode(data).decode()


class Conn:
    """One auth client connection in memory."""

    def __init__(self, auth, clock):
        self.factory = dp.DovecotAuthFactory(auth, clock, spid=777)
        self.proto = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.greeting = self.take()

    def send(self, text):
        self.proto.dataReceived(text.encode("utf-8") if isinstance(text, str) else text)

    def take(self):
        """Return the lines written since the last call."""
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        return data.splitlines()

    def ask(self, text):
        self.send(text)
        return self.take()


@pytest.fixture(scope="module")
def ann_hash():
    return schemes.generate("SHA512-CRYPT", "annpass")


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def make_conn(tmp_path, clock, ann_hash):
    """make_conn(extra_main_cf="") -> a handshaken Conn on a fresh AuthService."""
    def make(extra="", handshake=True):
        config = write_config(tmp_path, MECHS + extra, PASSWD % ann_hash)
        conn = Conn(service(config, clock), clock)
        if handshake:
            assert conn.ask(HANDSHAKE) == []
        return conn
    return make


def test_greeting_announces_mechanisms_with_dovecot_flags(make_conn):
    """The server greets first with VERSION 1 2, MECH lines with Dovecot 2.3's flags, SPID, CUID, COOKIE, DONE."""
    conn = make_conn(handshake=False)
    lines = conn.greeting
    assert lines[:6] == ["VERSION\t1\t2", "MECH\tPLAIN\tplaintext", "MECH\tLOGIN\tplaintext",
                         "MECH\tCRAM-MD5\tdictionary\tactive", "MECH\tSCRAM-SHA-1\tmutual-auth",
                         "MECH\tSCRAM-SHA-256\tmutual-auth"]
    assert lines[6:8] == ["SPID\t777", "CUID\t%d" % conn.proto.cuid]
    assert re.fullmatch(r"COOKIE\t[0-9a-f]{32}", lines[8])
    assert lines[9:] == ["DONE"]


def test_connections_get_distinct_cuids_and_cookies(make_conn):
    """Each connection of one factory gets its own CUID and a fresh random cookie."""
    conn = make_conn(handshake=False)
    second = conn.factory.buildProtocol(None)
    transport = StringTransport()
    second.makeConnection(transport)
    lines = transport.value().decode().splitlines()
    assert "CUID\t%d" % second.cuid in lines and second.cuid != conn.proto.cuid
    cookies = [line for line in conn.greeting + lines if line.startswith("COOKIE")]
    assert len(cookies) == 2 and cookies[0] != cookies[1]


def test_plain_with_initial_response(make_conn):
    """AUTH PLAIN with resp= succeeds at once with OK <id> user=<name>."""
    conn = make_conn()
    reply = conn.ask("AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=%s\n"
                     % b64(b"\0Joe@Example.com\0secret"))
    assert reply == ["OK\t1\tuser=joe@example.com"]


def test_plain_without_initial_response_gets_an_empty_challenge(make_conn):
    """Without resp= PLAIN answers an empty CONT; the client's CONT completes it (also for a hashed password)."""
    conn = make_conn()
    assert conn.ask("AUTH\t7\tPLAIN\tservice=smtp\trip=127.0.0.1\n") == ["CONT\t7\t"]
    assert conn.ask("CONT\t7\t%s\n" % b64(b"\0ann@example.com\0annpass")) == ["OK\t7\tuser=ann@example.com"]


def test_login_conversation_step_by_step(make_conn):
    """LOGIN prompts Username: and Password: as CONT lines, then says OK."""
    conn = make_conn()
    assert conn.ask("AUTH\t2\tLOGIN\tservice=smtp\trip=127.0.0.1\n") == ["CONT\t2\t%s" % b64(b"Username:")]
    assert conn.ask("CONT\t2\t%s\n" % b64(b"joe@example.com")) == ["CONT\t2\t%s" % b64(b"Password:")]
    assert conn.ask("CONT\t2\t%s\n" % b64(b"secret")) == ["OK\t2\tuser=joe@example.com"]


@pytest.mark.parametrize("mechanism", ["CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_challenge_response_mechanisms_with_final_resp_ok(make_conn, mechanism):
    """A real client mechanism completes over the protocol; SCRAM's server signature comes in OK resp=."""
    conn = make_conn()
    client = client_for(mechanism, "joe@example.com", "secret")
    first = client.start()
    line = "AUTH\t3\t%s\tservice=imap\tfinal-resp-ok\trip=127.0.0.1" % mechanism
    reply = conn.ask(line + ("\tresp=%s\n" % b64(first) if first is not None else "\n"))
    while reply[0].startswith("CONT\t3\t"):
        reply = conn.ask("CONT\t3\t%s\n" % b64(client.respond(base64.b64decode(reply[0].split("\t")[2]))))
    fields = reply[0].split("\t")
    assert fields[:3] == ["OK", "3", "user=joe@example.com"]
    final = [f[5:] for f in fields[3:] if f.startswith("resp=")]
    client.finish(base64.b64decode(final[0]) if final else b"")   # raises unless the server proved itself
    assert bool(final) == mechanism.startswith("SCRAM")


def test_scram_final_data_goes_in_cont_for_clients_without_final_resp_ok(make_conn):
    """Without final-resp-ok (Postfix), SCRAM's v=... is sent as CONT and OK follows the client's empty CONT."""
    conn = make_conn()
    client = client_for("SCRAM-SHA-256", "joe@example.com", "secret")
    reply = conn.ask("AUTH\t4\tSCRAM-SHA-256\tservice=smtp\tresp=%s\n" % b64(client.start()))
    reply = conn.ask("CONT\t4\t%s\n" % b64(client.respond(base64.b64decode(reply[0].split("\t")[2]))))
    assert reply[0].startswith("CONT\t4\t")
    client.finish(base64.b64decode(reply[0].split("\t")[2]))
    assert conn.ask("CONT\t4\t\n") == ["OK\t4\tuser=joe@example.com"]


def test_wrong_password_fails_after_the_delay_while_other_requests_proceed(make_conn, clock):
    """A failure is answered after auth_failure_delay; a concurrent good request on the same connection is not held up."""
    conn = make_conn("auth_failure_delay = 2s\n")
    assert conn.ask("AUTH\t10\tPLAIN\tservice=smtp\trip=192.0.2.9\tsecured\tresp=%s\n"
                    % b64(b"\0joe@example.com\0wrong")) == []
    assert conn.ask("AUTH\t11\tPLAIN\tservice=smtp\trip=192.0.2.10\tsecured\tresp=%s\n"
                    % b64(b"\0joe@example.com\0secret")) == ["OK\t11\tuser=joe@example.com"]
    clock.advance(1.9)
    assert conn.take() == []
    clock.advance(0.2)
    assert conn.take() == ["FAIL\t10\tuser=joe@example.com"]


def test_failure_never_tells_why(make_conn):
    """Unknown user and wrong password get the same FAIL without a reason; the log has the reason."""
    conn = make_conn()
    with captured_log() as lines:
        unknown = conn.ask("AUTH\t1\tPLAIN\tservice=smtp\trip=127.0.0.1\tresp=%s\n" % b64(b"\0nobody@example.com\0x"))
        wrong = conn.ask("AUTH\t2\tPLAIN\tservice=smtp\trip=127.0.0.1\tresp=%s\n" % b64(b"\0joe@example.com\0x"))
    assert unknown == ["FAIL\t1\tuser=nobody@example.com"]
    assert wrong == ["FAIL\t2\tuser=joe@example.com"]
    assert "passwd-file(nobody@example.com,127.0.0.1,<%d.1>): unknown user" % conn.proto.cuid in lines
    assert "passwd-file(joe@example.com,127.0.0.1,<%d.2>): Password mismatch" % conn.proto.cuid in lines


def test_cram_md5_for_a_hashed_password_fails_with_the_reason_in_the_log(make_conn):
    """A mechanism that cannot serve the user's scheme fails like a wrong password; the log says why."""
    conn = make_conn()
    with captured_log() as lines:
        reply = conn.ask("AUTH\t5\tCRAM-MD5\tservice=smtp\trip=127.0.0.1\n")
        challenge = base64.b64decode(reply[0].split("\t")[2])
        client = client_for("CRAM-MD5", "ann@example.com", "annpass")
        assert conn.ask("CONT\t5\t%s\n" % b64(client.respond(challenge))) == ["FAIL\t5\tuser=ann@example.com"]
    assert any("CRAM-MD5 needs a CRAM-MD5 or plaintext password; user has SHA512-CRYPT" in line for line in lines)


def test_plaintext_is_refused_for_an_untrusted_client_without_tls(make_conn):
    """With disable_plaintext_auth = yes, PLAIN needs `secured`, loopback or login_trusted_networks."""
    conn = make_conn("login_trusted_networks = 198.51.100.0/24\n")
    plain = b64(b"\0joe@example.com\0secret")
    assert conn.ask("AUTH\t1\tPLAIN\tservice=smtp\trip=192.0.2.1\tlip=192.0.2.2\tresp=%s\n" % plain) == [
        "FAIL\t1\treason=Plaintext authentication disallowed on non-secure (SSL/TLS) connections"]
    assert conn.ask("AUTH\t2\tPLAIN\tservice=smtp\trip=192.0.2.1\tsecured\tresp=%s\n" % plain) == [
        "OK\t2\tuser=joe@example.com"]
    assert conn.ask("AUTH\t3\tPLAIN\tservice=smtp\trip=198.51.100.7\tresp=%s\n" % plain) == [
        "OK\t3\tuser=joe@example.com"]
    assert conn.ask("AUTH\t4\tPLAIN\tservice=smtp\trip=::1\tresp=%s\n" % plain) == ["OK\t4\tuser=joe@example.com"]


def test_plaintext_is_left_to_the_client_with_disable_plaintext_auth_no(make_conn):
    """With disable_plaintext_auth = no the auth client (Postfix) alone decides about TLS."""
    conn = make_conn("disable_plaintext_auth = no\n")
    assert conn.ask("AUTH\t1\tPLAIN\tservice=smtp\trip=192.0.2.1\tresp=%s\n" % b64(b"\0joe@example.com\0secret")) == [
        "OK\t1\tuser=joe@example.com"]


def test_request_fields_reach_the_auth_request(make_conn):
    """service, rip, lip, secured and the session id are mapped into the AuthRequest."""
    conn = make_conn()
    conn.send("AUTH\t9\tLOGIN\tservice=submission\tlip=192.0.2.2\trip=192.0.2.1\tsecured\n")
    request = conn.proto._requests[9].request
    assert (request.service, request.remote_ip, request.local_ip, request.secure) == (
        "submission", "192.0.2.1", "192.0.2.2", True)
    assert request.session == "%d.9" % conn.proto.cuid
    conn.send("AUTH\t10\tCRAM-MD5\tservice=smtp\trip=192.0.2.1\tsession=abc\n")
    assert conn.proto._requests[10].request.secure is False
    assert conn.proto._requests[10].request.session == "abc"


@pytest.mark.parametrize("line,reply", [
    ("AUTH\t1\tPLAIN\tservice=smtp\tresp=%%%%\n",
     "FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response"),
    ("CONT\t99\tabc=\n", "FAIL\t99\treason=Authentication request timed out"),
], ids=["bad-base64", "cont-unknown-id"])
def test_bad_requests_fail_but_keep_the_connection(make_conn, line, reply):
    """Bad base64 and a CONT for an unknown id get FAIL (as Dovecot answers) and the connection stays usable."""
    conn = make_conn()
    assert conn.ask(line) == [reply]
    assert not conn.transport.disconnecting
    assert conn.ask("AUTH\t2\tPLAIN\tservice=smtp\trip=127.0.0.1\tresp=%s\n" % b64(b"\0joe@example.com\0secret")) == [
        "OK\t2\tuser=joe@example.com"]


def test_bad_base64_in_a_continuation_fails_the_request(make_conn):
    """A CONT with invalid base64 fails that request with Dovecot's code and reason."""
    conn = make_conn()
    conn.ask("AUTH\t5\tLOGIN\tservice=smtp\trip=127.0.0.1\n")
    assert conn.ask("CONT\t5\tno!base64\n") == [
        "FAIL\t5\tcode=invalid_base64\treason=Invalid base64 data in continued response"]
    assert conn.ask("CONT\t5\t%s\n" % b64(b"joe")) == ["FAIL\t5\treason=Authentication request timed out"]


def test_resp_must_be_last(make_conn):
    """Fields after resp= are ignored, so client data cannot inject fields such as `secured`."""
    conn = make_conn()
    reply = conn.ask("AUTH\t1\tPLAIN\tservice=smtp\trip=192.0.2.1\tresp=%s\tsecured\n" % b64(b"\0joe@example.com\0secret"))
    assert reply == ["FAIL\t1\treason=Plaintext authentication disallowed on non-secure (SSL/TLS) connections"]


def test_empty_resp_means_no_initial_response_and_equals_sign_an_empty_one(make_conn):
    """resp= (empty) starts without initial response; resp== sends an empty one (PLAIN then fails)."""
    conn = make_conn()
    assert conn.ask("AUTH\t1\tPLAIN\tservice=smtp\trip=127.0.0.1\tresp=\n") == ["CONT\t1\t"]
    assert conn.ask("AUTH\t2\tPLAIN\tservice=smtp\trip=127.0.0.1\tresp==\n")[0].startswith("FAIL\t2")


def test_unanswered_challenge_times_out(make_conn, clock):
    """A request waiting for the client's CONT is forgotten after REQUEST_TIMEOUT seconds."""
    conn = make_conn()
    conn.ask("AUTH\t3\tLOGIN\tservice=smtp\trip=127.0.0.1\n")
    clock.advance(dp.REQUEST_TIMEOUT + 1)
    assert 3 not in conn.proto._requests
    assert conn.ask("CONT\t3\t%s\n" % b64(b"joe@example.com")) == ["FAIL\t3\treason=Authentication request timed out"]


PROTOCOL_ERRORS = [
    ("CPID\t1\n", "sent CPID before VERSION", False),
    ("VERSION\t2\t0\n", "is not compatible with this server (protocol version 2, not 1)", False),
    ("VERSION\t1\t0\nAUTH\t1\tPLAIN\tservice=smtp\n", "sent AUTH before CPID", False),
    ("HELLO\n", "sent unknown command 'HELLO'", True),
    ("AUTH\tx\tPLAIN\tservice=smtp\n", "sent a bad request id 'x'", True),
    ("AUTH\t4294967296\tPLAIN\tservice=smtp\n", "sent a bad request id '4294967296'", True),
    ("AUTH\t1\tPLAIN\n", "didn't specify service for request 1", True),
    ("AUTH\t1\tFOO\tservice=smtp\n", "requested unsupported authentication mechanism FOO", True),
    ("AUTH\t1\tLOGIN\tservice=smtp\trip=127.0.0.1\nAUTH\t1\tLOGIN\tservice=smtp\trip=127.0.0.1\n",
     "sent a duplicate request id 1", True),
    ("AUTH\n", "sent a malformed AUTH", True),
    (b"AUTH\t1\tPLAIN\tservice=sm\xfftp\n", "sent a line that is not UTF-8", True),
    ("AUTH\t1\tPLAIN\tservice=smtp\tresp=" + "A" * dp.MAX_LINE_LENGTH + "\n", "sent a line longer than", True),
]


@pytest.mark.parametrize("data,message,handshake", PROTOCOL_ERRORS,
                         ids=["cpid-first", "major-2", "no-cpid", "unknown-command", "bad-id", "id-overflow",
                              "no-service", "unknown-mech", "duplicate-id", "short-auth", "not-utf8", "overlong"])
def test_protocol_errors_are_logged_and_disconnect(make_conn, data, message, handshake):
    """A client that breaks the protocol is logged and disconnected, with nothing (no traceback) sent to it."""
    conn = make_conn(handshake=handshake)
    with captured_log() as lines:
        conn.send(data)
    assert conn.transport.disconnecting
    written = conn.take()
    assert all(line.startswith("CONT\t1\t") for line in written)   # at most the first LOGIN prompt
    assert any(line.startswith("BUG: Authentication client ") and message in line and line.endswith("; disconnecting")
               for line in lines), lines


def test_cont_while_a_step_is_running_is_a_protocol_error(make_conn, clock):
    """A second CONT before the server answered the first one drops the connection."""
    conn = make_conn("auth_failure_delay = 2s\n")
    conn.ask("AUTH\t1\tLOGIN\tservice=smtp\trip=127.0.0.1\n")
    conn.ask("CONT\t1\t%s\n" % b64(b"joe@example.com"))
    conn.send("CONT\t1\t%s\n" % b64(b"wrong"))        # now waiting out the failure delay
    conn.send("CONT\t1\t%s\n" % b64(b"again"))
    assert conn.transport.disconnecting
    conn.proto.connectionLost(None)
    clock.advance(3)
    assert conn.take() == []                           # nothing written after the drop


class _BrokenService:
    """An AuthService stand-in whose conversations fail in the two ways a real one can: temporarily, or with a bug."""

    def __init__(self, outcome):
        self.outcome = outcome

    def mechanisms(self, secure):
        return ["PLAIN"]

    def is_secure_connection(self, remote_ip, tls):
        return True

    def start(self, mechanism, request):
        return self

    async def step(self, response):
        if self.outcome == "bug":
            raise RuntimeError("passdb driver bug")
        return failure("passwd-file(joe,127.0.0.1): internal failure: disk on fire", user="joe", temporary=True)


@pytest.mark.parametrize("outcome", ["temporary", "bug"])
def test_internal_failures_are_temporary_fails(clock, outcome):
    """Internal failures give FAIL code=temp_fail temp with a generic reason; a bug is logged with its traceback."""
    conn = Conn(_BrokenService(outcome), clock)
    conn.ask(HANDSHAKE)
    with captured_log() as lines:
        reply = conn.ask("AUTH\t1\tPLAIN\tservice=smtp\tresp=%s\n" % b64(b"\0joe\0x"))
    user = "\tuser=joe" if outcome == "temporary" else ""
    assert reply == ["FAIL\t1%s\tcode=temp_fail\ttemp\treason=Temporary authentication failure, try again later" % user]
    assert "disk on fire" not in reply[0] and "bug" not in reply[0]
    if outcome == "bug":
        assert any("auth service error for PLAIN request 1" in line for line in lines)
    assert not conn.transport.disconnecting


def test_tab_escaping_round_trips():
    """Values with TAB, LF, CR or \\001 are escaped as Dovecot does and come back unchanged."""
    text = "a\tb\nc\rd\x01e"
    assert "\t" not in dp.tab_escape(text) and "\n" not in dp.tab_escape(text)
    assert dp.tab_unescape(dp.tab_escape(text)) == text


def test_parse_options_stops_at_resp():
    """Booleans, name=value pairs and a final resp= are parsed; anything after resp= is dropped."""
    assert dp.parse_options(["service=smtp", "secured", "lip=1.2.3.4", "resp=AAAA", "secured2"]) == {
        "service": "smtp", "secured": True, "lip": "1.2.3.4", "resp": "AAAA"}


# -- the master.cf service on real sockets -----------------------------------------


class _AuthClient(LineOnlyReceiver):
    """A minimal auth client over a real socket: collects lines, waits for one that matches."""

    delimiter = b"\n"

    def connectionMade(self):
        self.lines = []
        self._waiting = []

    def lineReceived(self, line):
        self.lines.append(line.decode())
        for prefix, d in list(self._waiting):
            if line.decode().startswith(prefix):
                self._waiting.remove((prefix, d))
                d.callback(line.decode())

    def wait_for(self, prefix):
        for line in self.lines:
            if line.startswith(prefix):
                return defer.succeed(line)
        d = defer.Deferred()
        self._waiting.append((prefix, d))
        return d.addTimeout(10, reactor)

    def send(self, text):
        self.transport.write(text.encode())


async def _run_service(config_dir, master_cf):
    (config_dir / "master.cf").write_text(master_cf)
    root = app.make_service(str(config_dir), reactor=reactor)
    root.privilegedStartService()
    root.startService()
    return root


def _add_user(config_dir):
    with open(config_dir / "passwd", "a") as handle:
        handle.write("joe@example.test:{PLAIN}secret:1000:1000::/home/joe::\n")


@pytest_twisted.ensureDeferred
async def test_unix_socket_service_from_master_cf(config_dir, tmp_path):
    """master.cf `auth unix:PATH:mode=0660 auth` listens with that mode and authenticates over the real socket."""
    _add_user(config_dir)
    path = str(tmp_path / "auth-client")
    root = await _run_service(config_dir, "auth unix:%s:mode=0660 auth\n" % path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        client = await endpoints.connectProtocol(endpoints.UNIXClientEndpoint(reactor, path), _AuthClient())
        await client.wait_for("DONE")
        assert client.lines[0] == "VERSION\t1\t2"
        assert "MECH\tPLAIN\tplaintext" in client.lines and "MECH\tLOGIN\tplaintext" in client.lines
        client.send(HANDSHAKE + "AUTH\t1\tPLAIN\tservice=smtp\trip=127.0.0.1\tresp=%s\n"
                    % b64(b"\0joe@example.test\0secret"))
        assert await client.wait_for("OK\t1") == "OK\t1\tuser=joe@example.test"
        client.transport.loseConnection()
    finally:
        await root.stopService()


@pytest_twisted.ensureDeferred
async def test_overrides_give_the_service_its_own_auth_configuration(config_dir):
    """`-o auth_mechanisms=login` on the auth line changes what this socket offers (TCP listener)."""
    _add_user(config_dir)
    root = await _run_service(config_dir, "auth tcp:0:interface=127.0.0.1 auth -o auth_mechanisms=login\n")
    try:
        port = (await list(root.getServiceNamed("auth"))[0]._waitingForPort).getHost().port
        client = await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                                                 _AuthClient())
        await client.wait_for("DONE")
        assert [line for line in client.lines if line.startswith("MECH")] == ["MECH\tLOGIN\tplaintext"]
        client.send(HANDSHAKE + "AUTH\t1\tLOGIN\tservice=smtp\trip=127.0.0.1\tresp=%s\n" % b64(b"joe@example.test"))
        await client.wait_for("CONT\t1")
        client.send("CONT\t1\t%s\n" % b64(b"secret"))
        assert await client.wait_for("OK\t1") == "OK\t1\tuser=joe@example.test"
        client.transport.loseConnection()
    finally:
        await root.stopService()


def test_auth_service_needs_an_endpoint(config_dir):
    """An auth line without endpoint is a configuration error naming the master.cf line."""
    (config_dir / "master.cf").write_text("auth - auth\n")
    with pytest.raises(ConfigError, match=r"master.cf:1: service auth needs an endpoint"):
        app.make_service(str(config_dir), reactor=reactor)


@pytest_twisted.ensureDeferred
async def test_many_concurrent_requests_on_one_real_connection(config_dir, tmp_path):
    """60 pipelined requests (hashes checked in threads, some failures delayed) each get one reply under their own id."""
    status, _, err = run_cli("--config", config_dir, "user", "add", "ann@example.test", "--password", "annpass",
                             "--scheme", "SHA512-CRYPT")
    assert status == 0, err
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("auth_failure_delay = 0.3s\n")
    path = str(tmp_path / "auth-client")
    root = await _run_service(config_dir, "auth unix:%s:mode=0600 auth\n" % path)
    try:
        client = await endpoints.connectProtocol(endpoints.UNIXClientEndpoint(reactor, path), _AuthClient())
        await client.wait_for("DONE")
        good, bad = b64(b"\0ann@example.test\0annpass"), b64(b"\0ann@example.test\0wrong")
        lines = [HANDSHAKE]
        for request_id in range(1, 61):
            resp = bad if request_id % 10 == 0 else good
            lines.append("AUTH\t%d\tPLAIN\tservice=smtp\trip=127.0.0.%d\tresp=%s\n" % (request_id, request_id, resp))
        client.send("".join(lines))
        replies = [await client.wait_for("%s\t%d\t" % ("FAIL" if i % 10 == 0 else "OK", i)) for i in range(1, 61)]
        assert all(r == "OK\t%d\tuser=ann@example.test" % i for i, r in enumerate(replies, 1) if i % 10)
        assert all(r == "FAIL\t%d\tuser=ann@example.test" % i for i, r in enumerate(replies, 1) if i % 10 == 0)
        assert len([line for line in client.lines if line.startswith(("OK\t", "FAIL\t"))]) == 60
        client.transport.loseConnection()
    finally:
        await root.stopService()
