"""LOGIN and AUTHENTICATE through the auth service; plaintext rules; STARTTLS; IMAPS."""

import base64
import imaplib
import ssl

import pytest_twisted
from twisted.internet import address, task
from twisted.internet.testing import StringTransport

from mailstack.auth.service import AuthService
from mailstack.config import maincf
from mailstack.imapd.service import IMAPFactory
from mailstack.store.store import MailStore
from tests.imapd.conftest import connect, in_thread, threaded


@threaded
def test_login_success_and_failure(imap_server):
    """LOGIN succeeds with the right password (CAPABILITY in the OK) and fails with AUTHENTICATIONFAILED."""
    conn = connect(imap_server, login=False)
    bad = conn.transact("no", 'LOGIN "alice@example.test" "wrong"')
    assert bad.text.startswith(b"[AUTHENTICATIONFAILED]")
    ok = conn.transact("ok", 'LOGIN "alice@example.test" "secret-alice"')
    assert ok.text.startswith(b"[CAPABILITY IMAP4rev1") and b"UIDPLUS" in ok.text
    conn.close()


@threaded
def test_login_with_literals(imap_server):
    """LOGIN accepts its arguments as synchronising and LITERAL+ literals."""
    conn = connect(imap_server, login=False)
    user, password = b"alice@example.test", b"secret-alice"
    conn.send(b"L1 LOGIN {%d}\r\n" % len(user))
    assert conn.read_line().startswith(b"+")
    conn.send(user + b" {%d+}\r\n" % len(password) + password + b"\r\n")
    assert conn.finish(b"L1").status == "ok"
    conn.close()


@threaded
def test_authenticate_plain_with_and_without_initial_response(imap_server):
    """AUTHENTICATE PLAIN works with SASL-IR and with a continuation; '*' cancels with BAD."""
    conn = connect(imap_server, login=False)
    tag = conn.command("AUTHENTICATE PLAIN")
    assert conn.read_line() == b"+ "
    conn.send(b"*\r\n")
    assert conn.finish(tag).status == "bad"
    assert conn.authenticate_plain("alice@example.test", "secret-alice", initial=False).status == "ok"
    conn.close()
    conn = connect(imap_server, login=False)
    assert conn.authenticate_plain("bob@example.test", "secret-bob").status == "ok"
    conn.transact("ok", "SELECT INBOX")
    conn.close()


@threaded
def test_authenticate_errors(imap_server):
    """Unknown mechanisms are NO, bad base64 is BAD, wrong credentials are AUTHENTICATIONFAILED."""
    conn = connect(imap_server, login=False)
    conn.transact("no", "AUTHENTICATE X-UNKNOWN")
    conn.transact("bad", "AUTHENTICATE PLAIN !!!")
    token = base64.b64encode(b"\0alice@example.test\0nope").decode()
    assert conn.transact("no", "AUTHENTICATE PLAIN " + token).text.startswith(b"[AUTHENTICATIONFAILED]")
    conn.close()


@threaded
def test_too_many_failures_disconnect(imap_server):
    """After imapd_max_auth_attempts failures the server says BYE and closes."""
    conn = connect(imap_server, login=False)
    for _ in range(2):
        conn.transact("no", 'LOGIN "alice@example.test" "wrong"')
    tag = conn.command('LOGIN "alice@example.test" "wrong"')
    result = conn.finish(tag)
    assert result.status == "no" and result.find(b"BYE")
    assert conn.read_line() == b""
    conn.close()


@pytest_twisted.ensureDeferred
async def test_starttls_then_login(imap_server):
    """STARTTLS upgrades the plain port (verified against init's CA) and LOGIN works after it."""
    def run():
        client = imaplib.IMAP4("127.0.0.1", imap_server.ports["imap"], timeout=10)
        context = ssl.create_default_context(cafile=str(imap_server.config_dir / "tls" / "ca.pem"))
        context.check_hostname = False
        client.starttls(context)
        caps = client.capabilities
        client.login("alice@example.test", "secret-alice")
        client.logout()
        return caps

    caps = await in_thread(run)
    assert "STARTTLS" not in caps


@threaded
def test_starttls_discards_pipelined_commands(imap_server):
    """Commands pipelined after STARTTLS in the clear are never executed (command injection)."""
    conn = connect(imap_server, login=False)
    conn.send(b"S1 STARTTLS\r\nS2 LOGIN alice@example.test secret-alice\r\n")
    assert conn.read_line().startswith(b"S1 OK")
    context = ssl.create_default_context(cafile=str(imap_server.config_dir / "tls" / "ca.pem"))
    conn.sock = context.wrap_socket(conn.sock, server_hostname="localhost")
    conn.file = conn.sock.makefile("rb")
    result = conn.transact("bad", "SELECT INBOX")
    assert b"Not authenticated" in result.text
    conn.close()


@threaded
def test_imaps_login(imap_server):
    """IMAPS (implicit TLS) accepts logins and does not offer STARTTLS."""
    conn = connect(imap_server, tls=True, login=False)
    assert b"STARTTLS" not in conn.greeting
    conn.login("alice@example.test", "secret-alice")
    conn.transact("ok", "SELECT INBOX")
    conn.close()


def _memory_session(config_dir, remote="192.0.2.7"):
    config = maincf.load(str(config_dir))
    clock = task.Clock()
    factory = IMAPFactory(clock, config, AuthService(config, clock), MailStore(None, config))
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=address.IPv4Address("TCP", remote, 40000),
                                hostAddress=address.IPv4Address("TCP", "192.0.2.1", 143))
    proto.makeConnection(transport)
    return proto, transport, clock


def test_plaintext_refused_on_insecure_connection(config_dir):
    """From a non-trusted address without TLS: LOGINDISABLED, no AUTH=PLAIN, LOGIN is NO [PRIVACYREQUIRED]."""
    proto, transport, clock = _memory_session(config_dir)
    greeting = transport.value()
    assert b"LOGINDISABLED" in greeting and b"AUTH=PLAIN" not in greeting
    transport.clear()
    proto.dataReceived(b"a LOGIN alice secret\r\n")
    assert transport.value() == (b"a NO [PRIVACYREQUIRED] Plaintext authentication disallowed "
                                 b"on non-secure (SSL/TLS) connections.\r\n")
    transport.clear()
    proto.dataReceived(b"b AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n")
    assert transport.value().startswith(b"b NO [PRIVACYREQUIRED]")
    proto.connectionLost(None)


def test_trusted_network_allows_plaintext(config_dir):
    """A client in login_trusted_networks counts as secure: no LOGINDISABLED."""
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("login_trusted_networks = 192.0.2.0/24\n")
    proto, transport, clock = _memory_session(config_dir)
    assert b"LOGINDISABLED" not in transport.value() and b"AUTH=PLAIN" in transport.value()
    proto.connectionLost(None)


def test_login_timeout(config_dir):
    """An unauthenticated session is closed after imapd_login_timeout with BYE."""
    proto, transport, clock = _memory_session(config_dir)
    clock.advance(59)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.value().endswith(b"* BYE Disconnected for inactivity.\r\n")
    assert transport.disconnecting
    proto.connectionLost(None)


def test_plaintext_allowed_when_disable_plaintext_auth_is_no(config_dir):
    """disable_plaintext_auth = no: an insecure client sees AUTH=PLAIN and no LOGINDISABLED."""
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("disable_plaintext_auth = no\n")
    proto, transport, clock = _memory_session(config_dir)
    assert b"LOGINDISABLED" not in transport.value() and b"AUTH=PLAIN" in transport.value()
    proto.connectionLost(None)
