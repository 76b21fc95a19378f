"""Time-dependent limits with an injected clock: command timeout, error delays, error limits, internal errors."""

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailstack import app
from mailstack.smtpd.service import SMTPServerFactory, build_server
from tests.smtpd.harness import LogCapture, make_config


@pytest.fixture
def session(smtp_config_dir):
    """An in-memory SMTP session factory driven by a Clock: returns (protocol, transport, clock, logs)."""
    captures = []

    def start(**overrides):
        overrides.setdefault("smtpd_error_sleep_time", "0")
        main, config = make_config(smtp_config_dir, **overrides)
        clock = Clock()
        ctx = app.ServerContext(clock, main, str(smtp_config_dir))
        server = build_server(ctx, config, "smtp")
        proto = SMTPServerFactory(server).buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000),
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 25))
        logs = LogCapture()
        captures.append(logs)
        proto.makeConnection(transport)
        return proto, transport, clock, logs

    yield start
    for logs in captures:
        logs.stop()


def _take(transport):
    value = transport.value()
    transport.clear()
    return value


def test_command_timeout(session):
    """smtpd_timeout counts from the last input; when it runs out the client gets 421 4.4.2 and is dropped."""
    proto, transport, clock, logs = session(smtpd_timeout="300s")
    assert _take(transport).startswith(b"220 ")
    clock.advance(299)
    proto.dataReceived(b"NOOP\r\n")
    assert _take(transport) == b"250 2.0.0 Ok\r\n"
    clock.advance(299)
    assert not transport.disconnecting
    clock.advance(1)
    assert _take(transport) == b"421 4.4.2 mail.example.test Error: timeout exceeded\r\n"
    assert transport.disconnecting
    assert logs.grep("timeout after NOOP from unknown[127.0.0.1]")


def test_error_sleep_delays_reject_replies(session):
    """Below the soft limit a 4xx/5xx reply waits smtpd_error_sleep_time; 2xx replies do not wait."""
    proto, transport, clock, logs = session(smtpd_error_sleep_time="5s")
    _take(transport)
    proto.dataReceived(b"FROB\r\nNOOP\r\n")
    assert _take(transport) == b""
    clock.advance(4.9)
    assert _take(transport) == b""
    clock.advance(0.1)
    assert _take(transport) == b"502 5.5.2 Error: command not recognized\r\n250 2.0.0 Ok\r\n"


def test_soft_error_limit_slows_every_reply(session):
    """From smtpd_soft_error_limit errors on, every reply waits one second per error."""
    proto, transport, clock, logs = session(smtpd_soft_error_limit="2")
    _take(transport)
    proto.dataReceived(b"FROB\r\n")
    assert _take(transport) == b"502 5.5.2 Error: command not recognized\r\n"
    proto.dataReceived(b"FROB\r\n")
    assert _take(transport) == b""
    clock.advance(2)
    assert _take(transport) == b"502 5.5.2 Error: command not recognized\r\n"
    proto.dataReceived(b"NOOP\r\n")
    clock.advance(1.9)
    assert _take(transport) == b""
    clock.advance(0.1)
    assert _take(transport) == b"250 2.0.0 Ok\r\n"


def test_hard_error_limit_disconnects(session):
    """At smtpd_hard_error_limit errors the next command gets 421 4.7.0 and the session ends."""
    proto, transport, clock, logs = session(smtpd_hard_error_limit="3", smtpd_soft_error_limit="10")
    _take(transport)
    proto.dataReceived(b"FROB\r\nFROB\r\nFROB\r\nNOOP\r\n")
    out = _take(transport)
    assert out.endswith(b"421 4.7.0 mail.example.test Error: too many errors\r\n")
    assert out.count(b"502 ") == 3
    assert transport.disconnecting
    assert logs.grep("too many errors after NOOP from unknown[127.0.0.1]")


def test_internal_error_is_451_and_logged_once(session, monkeypatch):
    """An unexpected exception answers 451 4.3.0 without a traceback to the client, and is logged."""
    proto, transport, clock, logs = session()
    _take(transport)

    def broken(self, arg):
        raise RuntimeError("boom")
    monkeypatch.setattr(type(proto), "smtp_noop", broken)
    proto.dataReceived(b"NOOP\r\nQUIT\r\n")
    assert _take(transport) == b"451 4.3.0 Error: internal error\r\n221 2.0.0 Bye\r\n"
    assert logs.grep("NOQUEUE: error in NOOP")


def test_tcp_nodelay_is_set(smtp_config_dir):
    """Every connection gets TCP_NODELAY."""
    main, config = make_config(smtp_config_dir)
    ctx = app.ServerContext(Clock(), main, str(smtp_config_dir))
    proto = SMTPServerFactory(build_server(ctx, config, "smtp")).buildProtocol(None)

    class NoDelayTransport(StringTransport):
        nodelay = False

        def setTcpNoDelay(self, enabled):
            self.nodelay = enabled
    transport = NoDelayTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
    logs = LogCapture()
    try:
        proto.makeConnection(transport)
    finally:
        logs.stop()
    assert transport.nodelay is True


def test_junk_commands_past_the_limit_count_as_errors(session):
    """Past smtpd_junk_command_limit, each NOOP/RSET counts as an error, so the hard limit ends the session."""
    proto, transport, clock, logs = session(smtpd_junk_command_limit="3", smtpd_hard_error_limit="2",
                                            smtpd_soft_error_limit="10")
    _take(transport)
    proto.dataReceived(b"HELO client.example\r\nNOOP\r\nRSET\r\nNOOP\r\n")
    assert _take(transport).count(b"250 ") == 4
    assert proto.error_count == 0 and proto.junk_count == 3
    proto.dataReceived(b"RSET\r\nNOOP\r\n")
    assert _take(transport) == b"250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
    assert proto.error_count == 2 and not transport.disconnecting
    proto.dataReceived(b"NOOP\r\n")
    assert _take(transport) == b"421 4.7.0 mail.example.test Error: too many errors\r\n"
    assert transport.disconnecting
    assert logs.grep("too many errors after NOOP from unknown[127.0.0.1]")


def test_junk_command_limit_default_is_postfix_100(smtp_config_dir):
    """smtpd_junk_command_limit defaults to Postfix's 100."""
    main, _ = make_config(smtp_config_dir)
    assert main["smtpd_junk_command_limit"] == 100
