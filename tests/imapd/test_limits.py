"""Security limits: over-long lines and literals are refused before memory is spent; idle timeout; logs."""

import io
import socket

from twisted.logger import globalLogPublisher

from tests.imapd.conftest import connect, threaded


@threaded
def test_overlong_line_ends_session(imap_server):
    """A command line longer than imap_max_line_length gets BYE and the connection closes."""
    conn = connect(imap_server, login=False)
    try:
        conn.send(b"a NOOP " + b"x" * (70 * 1024) + b"\r\n")
    except OSError:
        pass
    assert conn.read_line().startswith(b"* BYE")
    assert conn.read_line() == b""
    conn.close()


@threaded
def test_huge_literal_refused_before_continuation(imap_server):
    """A synchronising literal over the limit is refused with NO [TOOBIG] and no '+' is sent."""
    conn = connect(imap_server)
    conn.send(b"a APPEND INBOX {999999999}\r\n")
    assert conn.read_line().startswith(b"a NO [TOOBIG]")
    conn.send(b"b LOGIN {70000}\r\n")
    assert conn.read_line().startswith(b"b NO [TOOBIG]")
    conn.transact("ok", "NOOP")
    conn.close()


@threaded
def test_huge_nonsync_literal_ends_session(imap_server):
    """A LITERAL+ literal over the limit ends the session (its octets are already on the way)."""
    conn = connect(imap_server)
    conn.send(b"a APPEND INBOX {999999999+}\r\n")
    assert conn.read_line().startswith(b"* BYE [TOOBIG]")
    conn.close()


@threaded
def test_many_literals_count_together(imap_server):
    """Literals outside APPEND count against the line limit all together."""
    conn = connect(imap_server, login=False)
    chunk = b"y" * 40000
    try:
        conn.send(b"a LOGIN {40000+}\r\n" + chunk + b" {40000+}\r\n" + chunk + b"\r\n")
    except (OSError, socket.error):
        pass
    assert conn.read_line().startswith(b"* BYE")
    conn.close()


@threaded
def test_login_and_logout_are_logged(imap_server):
    """Logins and logouts are logged in Dovecot's shape with rip/lip and byte counts."""
    lines = io.StringIO()

    def observer(event):
        from twisted.logger import formatEvent
        if event.get("log_namespace") == "mailstack.imapd":
            lines.write(formatEvent(event) + "\n")

    globalLogPublisher.addObserver(observer)
    try:
        conn = connect(imap_server)
        conn.transact("ok", "LOGOUT")
        conn.read_line()
        conn.close()
        conn = connect(imap_server, tls=True)
        conn.close()
        import time
        time.sleep(0.2)
    finally:
        globalLogPublisher.removeObserver(observer)
    text = lines.getvalue()
    assert "imap-login: Login: user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1\n" in text
    assert "imap-login: Login: user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, TLS\n" in text
    assert "imap(alice@example.test): Logged out in=" in text
    assert "imap(alice@example.test): Disconnected: Logged out in=" in text


@threaded
def test_tcp_nodelay_on_every_connection(imap_server):
    """Sessions on the plain and the implicit-TLS port run with TCP_NODELAY set."""
    plain = connect(imap_server)
    tls = connect(imap_server, tls=True)
    sessions = [s for factory in imap_server.factories.values() for s in factory.sessions]
    assert len(sessions) == 2
    for session in sessions:
        handle = session.transport.getHandle()
        if not isinstance(handle, socket.socket):  # TLS wrapper: the TCP transport's socket
            handle = session.transport.transport.getHandle()
        assert handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    plain.close()
    tls.close()
