"""POP3 sessions end to end: big messages, pipelining, idle timeout, IMAP seeing deletions, UIDLs across restarts."""

import socket

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from mailstack.auth.service import AuthService
from mailstack.config import maincf
from mailstack.pop3d import transfer
from mailstack.pop3d.lock import SessionLocks
from mailstack.pop3d.protocol import POP3Factory
from mailstack.pop3d.service import settings_for
from tests.pop3d import helpers
from tests.pop3d.helpers import PASSWORDS, message

JOE = "joe@example.test"


@pytest_twisted.async_yield_fixture
async def server(config_dir):
    server = await helpers.start(config_dir)
    yield server
    await helpers.stop(server)


def _raw_session(port, commands, tls_context=None):
    """Send ``commands`` in one write, read until the server closes; return all bytes received."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    if tls_context is not None:
        sock = tls_context.wrap_socket(sock, server_hostname="localhost")
    sock.sendall(b"".join(c + b"\r\n" for c in commands))
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            break
        chunks.append(data)
    sock.close()
    return b"".join(chunks)


def _big_message():
    # Several 64 KiB chunks with dot lines everywhere, CRLF and LF mixed, a CR at a chunk edge.
    lines = [b"Subject: big", b""]
    for i in range(30000):
        lines.append(b".%05d dotted line" % i if i % 3 == 0 else b"plain line %05d ..." % i)
    data = b"\n".join(lines) + b"\n"
    return data[:70000] + b"\r\n" + data[70000:] + b".\nlast line without newline"


@pytest_twisted.ensureDeferred
async def test_big_message_and_pipelining_exact_wire_bytes(server):
    """Pipelined commands are answered in order; a streamed big RETR is byte-exact, over TCP and TLS."""
    big = _big_message()
    small = message("small", body=".\n..\n")
    server.deliver(JOE, small, big)
    commands = [b"USER " + JOE.encode(), b"PASS secret", b"STAT", b"LIST", b"RETR 2", b"RETR 1",
                b"UIDL 1", b"NOOP", b"QUIT"]
    for service, context in (("pop3", None), ("pop3s", server.tls_context())):
        wire = await server.in_thread(_raw_session, server.ports[service], commands, context)
        big_size = transfer.Stuffer()
        big_size.feed(big)
        big_size.finish()
        small_size = len(small.replace(b"\n", b"\r\n"))
        expected = b"".join([
            b"+OK mailstack ready.\r\n",
            b"+OK\r\n",
            b"+OK Logged in.\r\n",
            b"+OK 2 %d\r\n" % (small_size + big_size.octets),
            b"+OK 2 messages:\r\n1 %d\r\n2 %d\r\n.\r\n" % (small_size, big_size.octets),
            b"+OK %d octets\r\n" % big_size.octets + transfer.stuff(big),
            b"+OK %d octets\r\n" % small_size + transfer.stuff(small),
        ])
        assert wire.startswith(expected), service
        rest = wire[len(expected):].split(b"\r\n")
        assert rest[0].startswith(b"+OK 1 ") and rest[1:] == [b"+OK", b"+OK Logging out.", b""]
        assert len(big) > 4 * transfer.CHUNK


@pytest_twisted.ensureDeferred
async def test_deletions_reach_imap_listeners(server):
    """A POP3 deletion goes through the store: a listener on INBOX (as IMAP uses) hears the expunge."""
    uids = server.deliver(JOE, message("keep"), message("delete me"))
    store = server.root.ctx.shared("store", None)
    folder = store.mailbox(JOE).folder("INBOX")
    await store.run(folder.sync)
    heard = defer.Deferred()

    class Listener:
        def messages_added(self, folder, messages):
            pass

        def flags_changed(self, folder, messages):
            pass

        def messages_expunged(self, folder, expunged):
            if not heard.called:
                heard.callback(list(expunged))

    folder.add_listener(Listener())

    def talk():
        client = server.client()
        client.user(JOE)
        client.pass_(PASSWORDS[JOE])
        client.dele(2)
        return client.quit()
    try:
        assert await server.in_thread(talk) == b"+OK Logging out, messages deleted."
        assert await heard == [uids[1]]
    finally:
        for listener in folder.listeners:
            folder.remove_listener(listener)
    assert [m.uid for m in folder.messages()] == [uids[0]]


@pytest_twisted.ensureDeferred
async def test_uidl_stable_across_restart(config_dir):
    """UIDLs stay the same after a server restart and a new delivery."""
    def uidl(server):
        client = server.client()
        client.user(JOE)
        client.pass_(PASSWORDS[JOE])
        result = client.uidl()[1]
        client.quit()
        return result
    server = await helpers.start(config_dir)
    try:
        server.deliver(JOE, message("a"), message("b"))
        before = await server.in_thread(uidl, server)
    finally:
        await helpers.stop(server)
    server = await helpers.start(config_dir)
    try:
        server.deliver(JOE, message("c"))
        after = await server.in_thread(uidl, server)
    finally:
        await helpers.stop(server)
    assert after[:2] == before and len(after) == 3
    assert len({line.split()[1] for line in after}) == 3


def test_idle_timeout_with_clock(config_dir):
    """An idle session is told '-ERR Disconnected for inactivity.' after pop3_client_timeout (injected clock)."""
    config = maincf.load(str(config_dir))
    clock = task.Clock()
    auth = AuthService(config, clock)
    factory = POP3Factory(settings_for("pop3", config), auth, None, SessionLocks(), clock)
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 4321),
                                hostAddress=IPv4Address("TCP", "192.0.2.1", 110))
    proto.makeConnection(transport)
    assert transport.value() == b"+OK mailstack ready.\r\n"
    clock.advance(599)
    proto.dataReceived(b"CAPA\r\n")  # activity restarts the timer
    clock.advance(599)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.value().endswith(b"-ERR Disconnected for inactivity.\r\n")
    assert transport.disconnecting
    # Insecure address (not loopback, not trusted): USER is refused, CAPA offers STLS but no USER/PLAIN.
    capa = transport.value().split(b"\r\n")
    assert b"STLS" in capa and b"USER" not in capa and not any(c.startswith(b"SASL") for c in capa)


@pytest.mark.parametrize("line, reply", [
    (b"USER joe@example.test", b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."),
    (b"A" * 20000, b"-ERR Input line too long."),
    (b"\xff\xfe", b"-ERR Unknown command: (empty)"),
], ids=["user-insecure", "overlong", "garbage"])
def test_bad_input_in_memory(config_dir, line, reply):
    """Insecure USER, overlong lines and undecodable bytes get clear -ERR replies."""
    config = maincf.load(str(config_dir))
    clock = task.Clock()
    factory = POP3Factory(settings_for("pop3", config), AuthService(config, clock), None, SessionLocks(), clock)
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 4321),
                                hostAddress=IPv4Address("TCP", "192.0.2.1", 110))
    proto.makeConnection(transport)
    transport.clear()
    proto.dataReceived(line + b"\r\n")
    assert transport.value() == reply + b"\r\n"
    proto.connectionLost(None)


@pytest_twisted.ensureDeferred
async def test_messages_renamed_or_expunged_by_others(server):
    """A message re-flagged by another program is still retrieved; one expunged meanwhile gets -ERR [SYS/TEMP]."""
    uids = server.deliver(JOE, message("renamed"), message("expunged"))

    def talk():
        client = server.client()
        client.user(JOE)
        client.pass_(PASSWORDS[JOE])
        other = helpers.MailStore(None, server.config, fsync=False).mailbox(JOE).folder("INBOX")
        other.sync()
        other.store_flags([uids[0]], ["\\Flagged"], "add")   # renames new/X to cur/X:2,F
        other.expunge([uids[1]])
        renamed = client.retr(1)[1]
        gone = [_err(client.retr, 2), _err(client.top, 2, 0)]
        stat = client.stat()
        client.dele(2)
        bye = client.quit()
        return renamed, gone, stat, bye
    renamed, gone, stat, bye = await server.in_thread(talk)
    assert b"Subject: renamed" in renamed
    assert gone == ["-ERR [SYS/TEMP] Message was expunged by another session."] * 2
    assert stat[0] == 2  # the session's snapshot does not change (RFC 1939)
    assert bye == b"+OK Logging out, messages deleted."
    assert "del=0/2" in server.log_text()  # nothing left to delete: it was already gone


def _err(function, *args):
    import poplib
    try:
        function(*args)
    except poplib.error_proto as err:
        return err.args[0].decode()
    raise AssertionError("expected -ERR from %s" % function.__name__)


@pytest_twisted.ensureDeferred
async def test_tcp_nodelay_on_every_connection(server):
    """Server-side sockets of pop3 and pop3s have TCP_NODELAY set (no delayed-ACK stalls)."""
    from twisted.internet import reactor, threads

    from mailstack.pop3d.protocol import POP3Server

    def server_sockets():
        found = []
        for reader in reactor.getReaders():
            proto = getattr(reader, "protocol", None)
            inner = getattr(proto, "wrappedProtocol", proto)  # implicit TLS wraps the protocol
            if isinstance(inner, POP3Server):
                found.append(reader.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return found

    plain = await threads.deferToThread(server.client)
    tls = await threads.deferToThread(server.client, "pop3s")
    try:
        for _ in range(100):
            if len(server_sockets()) == 2:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        assert len(server_sockets()) == 2 and all(server_sockets())
    finally:
        await threads.deferToThread(plain.quit)
        await threads.deferToThread(tls.quit)
