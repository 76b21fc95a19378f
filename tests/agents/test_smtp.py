"""The SMTP client agent against a real SMTP server and a real DNS server on loopback."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from mailstack.agents.smtp import SMTPAgent, parse_nexthop, wire_format
from tests.agents.smtp_peer import SMTPPeer, listen_dns
from tests.queue.harness import Harness, LogCapture


@pytest.fixture
def logs():
    """Maillog lines emitted during the test."""
    capture = LogCapture().start()
    yield capture
    capture.stop()


@pytest.fixture
def peer():
    """A listening SMTP server on 127.0.0.1: (factory, port)."""
    factory = SMTPPeer()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    yield factory, port.getHost().port
    port.stopListening()


@pytest.fixture
def dns_port():
    """A DNS server on 127.0.0.1 with remote.test MX 10 mx1 (127.0.0.2, nothing listens), MX 20 mx2 (127.0.0.1)."""
    listening = listen_dns(reactor, {"remote.test": [(10, "mx1.remote.test"), (20, "mx2.remote.test")]},
                           {"mx1.remote.test": "127.0.0.2", "mx2.remote.test": "127.0.0.1",
                            "bare.test": "127.0.0.1"})
    yield listening.getHost().port
    listening.stopListening()


async def _deliver(tmp_path, settings, recipients, body=b"Subject: hi\n\n.leading dot\nend\n"):
    h = Harness(tmp_path, settings)
    h.agents["smtp"] = SMTPAgent(h.config, reactor)
    h.qmgr.start()
    queue_id = await h.submit("alice@mail.example.test", recipients, body)
    await h.settle()
    await h.qmgr.stop()
    return h, queue_id


def test_nexthop_forms():
    """[host]:port disables MX lookup, domain:port keeps it."""
    assert parse_nexthop("[127.0.0.1]:2525") == ("127.0.0.1", 2525, False)
    assert parse_nexthop("example.com:2525") == ("example.com", 2525, True)
    assert parse_nexthop("example.com") == ("example.com", 25, True)
    assert wire_format(b"a\n.b\n") == b"a\r\n..b\r\n"


@pytest_twisted.ensureDeferred
async def test_relayhost_delivery_with_per_recipient_replies(tmp_path, peer, logs):
    """Through relayhost: accepted recipients are sent, a 550 bounces, a 450 defers; the content arrives intact."""
    factory, port = peer
    factory.reject.add("bad@remote.test")
    factory.tempfail.add("later@remote.test")
    h, queue_id = await _deliver(tmp_path, "relayhost = [127.0.0.1]:%d\n" % port,
                                 ["good@remote.test", "bad@remote.test", "later@remote.test"])
    assert [(s, r) for s, r, _ in factory.received] == [("alice@mail.example.test", "good@remote.test")]
    assert factory.received[0][2].endswith(b"Subject: hi\n\n.leading dot\nend")
    sent = logs.matching("to=<good@remote.test>")[0]
    assert "mailstack/smtp[1]" in sent and "relay=127.0.0.1[127.0.0.1]:%d" % port in sent
    assert "dsn=2.0.0, status=sent (250 " in sent
    bounced = logs.matching("to=<bad@remote.test>")[0]
    assert "dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <bad@remote.test>" in bounced
    assert "(in reply to RCPT TO command)" in bounced
    assert "status=deferred (host 127.0.0.1[127.0.0.1] said: 450 4.2.0" in logs.matching("to=<later@remote.test>")[0]
    assert queue_id in h.queue.list("deferred")


@pytest_twisted.ensureDeferred
async def test_mx_lookup_tries_hosts_in_preference_order(tmp_path, peer, dns_port, logs):
    """MX 10 refuses connections, MX 20 takes the mail."""
    factory, port = peer
    await _deliver(tmp_path, "smtp_dns_servers = 127.0.0.1:%d\ntransport_maps =\n"
                             "default_transport = smtp:remote.test:%d\n" % (dns_port, port), ["x@remote.test"])
    assert [r for _, r, _ in factory.received] == ["x@remote.test"]
    assert "relay=mx2.remote.test[127.0.0.1]:%d" % port in logs.matching("to=<x@remote.test>")[0]


@pytest_twisted.ensureDeferred
async def test_domain_without_mx_uses_its_address_and_unknown_domain_bounces(tmp_path, peer, dns_port, logs):
    """A domain without MX is its own mail host (RFC 5321 §5.1); a name that does not exist bounces 5.4.4."""
    factory, port = peer
    await _deliver(tmp_path, "smtp_dns_servers = 127.0.0.1:%d\ndefault_transport = smtp:bare.test:%d\n"
                   % (dns_port, port), ["y@bare.test"])
    assert [r for _, r, _ in factory.received] == ["y@bare.test"]
    await _deliver(tmp_path, "smtp_dns_servers = 127.0.0.1:%d\n" % dns_port, ["z@nowhere.test"])
    assert "dsn=5.4.4, status=bounced (Host or domain name not found. Name service error for name=nowhere.test" \
        in logs.matching("to=<z@nowhere.test>")[0]


@pytest_twisted.ensureDeferred
async def test_unreachable_host_defers(tmp_path, logs):
    """A refused connection defers the recipients with Postfix's 'connect to' reason."""
    await _deliver(tmp_path, "relayhost = [127.0.0.1]:1\n", ["w@remote.test"])
    line = logs.matching("to=<w@remote.test>")[0]
    assert "relay=none" in line
    assert "dsn=4.4.1, status=deferred (connect to 127.0.0.1[127.0.0.1]:1: Connection refused)" in line


@pytest_twisted.ensureDeferred
async def test_starttls_encrypt(tmp_path, logs):
    """With smtp_tls_security_level = encrypt the client uses STARTTLS, and refuses a server without it."""
    import trustme
    from mailstack.util import tls
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    options = tls.server_options(str(tmp_path / "server.pem"), str(tmp_path / "server.pem"), "tlsv1.2")
    factory = SMTPPeer(tls_options=options)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    plain = SMTPPeer()
    plain_port = reactor.listenTCP(0, plain, interface="127.0.0.1")
    try:
        await _deliver(tmp_path, "relayhost = [127.0.0.1]:%d\nsmtp_tls_security_level = encrypt\n"
                       % port.getHost().port, ["tls@remote.test"])
        await _deliver(tmp_path, "relayhost = [127.0.0.1]:%d\nsmtp_tls_security_level = encrypt\n"
                       % plain_port.getHost().port, ["plain@remote.test"])
    finally:
        port.stopListening()
        plain_port.stopListening()
    assert [r for _, r, _ in factory.received] == ["tls@remote.test"]
    assert factory.protocols[0].startedTLS
    assert not plain.received
    assert "dsn=4.7.4, status=deferred (TLS is required, but was not offered by host 127.0.0.1[127.0.0.1])" \
        in logs.matching("to=<plain@remote.test>")[0]


@pytest_twisted.ensureDeferred
async def test_smtp_generic_maps_rewrite_envelope_and_headers_on_the_way_out(tmp_path, peer, logs):
    """generic(5): the envelope sender, recipients and From:/To: are mapped when sent; the body, other headers
    and the queued file are not; an unmatched extension is dropped unless propagate_unmatched_extensions says generic."""
    from mailstack.tables.maps import LocalDomains
    from mailstack.tables.registry import Tables
    factory, port = peer
    settings = ("relayhost = [127.0.0.1]:%d\nrecipient_delimiter = +\n"
                "smtp_generic_maps = inline:{ alice@mail.example.test=alice.doe@isp.example, "
                "dave@internal.example=d@public.example, @internal.example=@public.example }\n" % port)
    h = Harness(tmp_path, settings)
    tables = Tables(reactor, str(tmp_path))
    h.agents["smtp"] = SMTPAgent(h.config, reactor, generic_maps=tables.maps(h.config["smtp_generic_maps"]),
                                 is_local=LocalDomains(h.config, tables))
    h.qmgr.start()
    body = (b"From: Alice <alice@mail.example.test>\nTo: bob+news@internal.example, carol@remote.test\n"
            b"Subject: alice@mail.example.test\n\nbody mentions alice@mail.example.test\n")
    queue_id = await h.submit("alice@mail.example.test",
                              ["bob+news@internal.example", "dave+x@internal.example", "carol@remote.test"], body)
    await h.settle()
    await h.qmgr.stop()
    # "@domain" keeps the whole local part; "dave@..." matched without the extension, which is dropped.
    assert sorted((s, r) for s, r, _ in factory.received) == [
        ("alice.doe@isp.example", "bob+news@public.example"), ("alice.doe@isp.example", "carol@remote.test"),
        ("alice.doe@isp.example", "d@public.example")]
    sent = factory.received[0][2]
    assert b"From: Alice <alice.doe@isp.example>\n" in sent
    assert b"To: bob+news@public.example, carol@remote.test\n" in sent
    assert b"Subject: alice@mail.example.test\n" in sent and sent.endswith(b"body mentions alice@mail.example.test")
    # The log names the recipient as queued (Postfix logs the original address too).
    assert logs.matching("to=<bob+news@internal.example>")[0].count("status=sent")
    assert not h.queue.list("deferred") and queue_id not in h.queue.list("incoming")


@pytest_twisted.ensureDeferred
async def test_smtp_generic_maps_failure_defers(tmp_path, peer, logs):
    """A generic table that cannot answer defers the request instead of sending unmapped addresses."""
    from mailstack.tables.registry import Tables
    factory, port = peer
    h = Harness(tmp_path, "relayhost = [127.0.0.1]:%d\nsmtp_generic_maps = fail:broken\n" % port)
    tables = Tables(reactor, str(tmp_path))
    h.agents["smtp"] = SMTPAgent(h.config, reactor, generic_maps=tables.maps(h.config["smtp_generic_maps"]))
    h.qmgr.start()
    queue_id = await h.submit("alice@mail.example.test", ["carol@remote.test"])
    await h.settle()
    await h.qmgr.stop()
    assert factory.received == []
    assert "status=deferred (smtp_generic_maps lookup failure)" in logs.matching("to=<carol@remote.test>")[0]
    assert queue_id in h.queue.list("deferred")


@pytest_twisted.ensureDeferred
async def test_smtp_generic_maps_keep_the_extension_when_told(tmp_path):
    """propagate_unmatched_extensions = generic keeps +ext on a user@domain match; user keys apply to local domains."""
    from mailstack.tables.maps import LocalDomains
    from mailstack.tables.registry import Tables
    h = Harness(tmp_path, "recipient_delimiter = +\npropagate_unmatched_extensions = canonical, virtual, generic\n"
                          "smtp_generic_maps = inline:{ dave@internal.example=d@public.example, root=admin@isp.example }\n")
    tables = Tables(reactor, str(tmp_path))
    agent = SMTPAgent(h.config, reactor, generic_maps=tables.maps(h.config["smtp_generic_maps"]),
                      is_local=LocalDomains(h.config, tables))
    assert await agent.generic("dave+x@internal.example") == "d+x@public.example"
    assert await agent.generic("root@mail.example.test") == "admin@isp.example"
    assert await agent.generic("root@elsewhere.example") == "root@elsewhere.example"
    assert await agent.generic("") == ""
