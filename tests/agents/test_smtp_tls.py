"""The SMTP client's TLS levels verify and secure against real TLS servers on loopback (trustme CAs)."""

import pytest
import pytest_twisted
import trustme
from cryptography import x509
from twisted.internet import reactor

from mailstack.agents.smtp_tls import certificate_names, match_patterns, matching_name
from mailstack.util import tls
from tests.agents.smtp_peer import SMTPPeer, deliver, listen_dns


@pytest.fixture
def ca(tmp_path):
    """A trustme CA whose certificate is written to tmp_path/ca.pem."""
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return authority


@pytest.fixture
def tls_peer(tmp_path):
    """Start an SMTP server with STARTTLS and a certificate for ``names`` from ``authority``: (factory, port)."""
    ports = []

    def start(authority, *names):
        path = tmp_path / ("server-%d.pem" % len(ports))
        authority.issue_cert(*names).private_key_and_cert_chain_pem.write_to_path(str(path))
        factory = SMTPPeer(tls_options=tls.server_options(str(path), str(path), "tlsv1.2"))
        ports.append(reactor.listenTCP(0, factory, interface="127.0.0.1"))
        return factory, ports[-1].getHost().port
    yield start
    for port in ports:
        port.stopListening()


@pytest.fixture
def dns_port():
    """A DNS server: relay.test and mail.provider.test at 127.0.0.1; remote.test MX mail.provider.test,
    other.test MX mx.other.test (127.0.0.1)."""
    listening = listen_dns(reactor, {"remote.test": [(10, "mail.provider.test")],
                                     "other.test": [(10, "mx.other.test")]},
                           {"relay.test": "127.0.0.1", "mail.provider.test": "127.0.0.1",
                            "mx.other.test": "127.0.0.1"})
    yield listening.getHost().port
    listening.stopListening()


def _settings(dns_port, nexthop, level, cafile, extra=""):
    return ("smtp_dns_servers = 127.0.0.1:%d\nrelayhost = %s\nsmtp_tls_security_level = %s\n"
            "smtp_tls_CAfile = %s\n%s" % (dns_port, nexthop, level, cafile, extra))


@pytest_twisted.ensureDeferred
async def test_verify_accepts_a_trusted_certificate_for_the_relay_name(tmp_path, ca, tls_peer, dns_port, logs):
    """verify: a certificate from the CA in smtp_tls_CAfile naming the relayhost is Verified and the mail goes."""
    factory, port = tls_peer(ca, "relay.test")
    await deliver(tmp_path, _settings(dns_port, "[relay.test]:%d" % port, "verify", tmp_path / "ca.pem"),
                  ["a@remote.test"])
    assert [r for _, r, _ in factory.received] == ["a@remote.test"]
    assert factory.protocols[0].startedTLS
    established = logs.matching("TLS connection established")
    assert len(established) == 1
    assert "Verified TLS connection established to relay.test[127.0.0.1]:%d: TLSv1." % port in established[0]
    assert " with cipher " in established[0] and " bits)" in established[0]
    assert "status=sent" in logs.matching("to=<a@remote.test>")[0]


@pytest_twisted.ensureDeferred
async def test_verify_refuses_a_certificate_for_another_name(tmp_path, ca, tls_peer, dns_port, logs):
    """verify: a trusted certificate for another name defers (4.7.5 Server certificate not verified), nothing sent."""
    factory, port = tls_peer(ca, "elsewhere.test")
    h, queue_id = await deliver(tmp_path, _settings(dns_port, "[relay.test]:%d" % port, "verify",
                                                    tmp_path / "ca.pem"), ["b@remote.test"])
    assert factory.received == []
    assert logs.matching("Trusted TLS connection established to relay.test[127.0.0.1]:%d" % port)
    assert "name mismatch (certificate names: elsewhere.test; wanted: relay.test)" in \
        logs.matching("server certificate verification failed")[0]
    line = logs.matching("to=<b@remote.test>")[0]
    assert "dsn=4.7.5, status=deferred (Server certificate not verified)" in line
    assert queue_id in h.queue.list("deferred")


@pytest_twisted.ensureDeferred
async def test_verify_refuses_a_certificate_from_an_unknown_ca(tmp_path, ca, tls_peer, dns_port, logs):
    """verify: the right name signed by a CA that smtp_tls_CAfile does not hold is Untrusted and defers."""
    stranger = trustme.CA(organization_name="Stranger CA")
    factory, port = tls_peer(stranger, "relay.test")
    await deliver(tmp_path, _settings(dns_port, "[relay.test]:%d" % port, "verify", tmp_path / "ca.pem"),
                  ["c@remote.test"])
    assert factory.received == []
    assert logs.matching("Untrusted TLS connection established to relay.test[127.0.0.1]:%d" % port)
    assert "untrusted issuer /O=Stranger CA" in logs.matching("server certificate verification failed")[0]
    assert "status=deferred (Server certificate not verified)" in logs.matching("to=<c@remote.test>")[0]


@pytest_twisted.ensureDeferred
async def test_verify_matches_the_mx_host_name_and_secure_the_nexthop_domain(tmp_path, ca, tls_peer, dns_port,
                                                                               logs):
    """After an MX lookup verify matches the MX name (mail.provider.test); secure wants the domain or a
    sub-domain of it, so the same server fails for remote.test and mx.other.test passes for other.test."""
    factory, port = tls_peer(ca, "mail.provider.test", "mx.other.test")
    for n, (level, domain) in enumerate([("verify", "remote.test"), ("secure", "remote.test"),
                                         ("secure", "other.test")]):
        transport = "default_transport = smtp:%s:%d\n" % (domain, port)
        await deliver(tmp_path / str(n), _settings(dns_port, "", level, tmp_path / "ca.pem", transport),
                      ["%s@%s" % (level[0], domain)])
    assert sorted(r for _, r, _ in factory.received) == ["s@other.test", "v@remote.test"]
    assert "status=sent" in logs.matching("to=<v@remote.test>")[0]
    assert "status=sent" in logs.matching("to=<s@other.test>")[0]
    assert "status=deferred (Server certificate not verified)" in logs.matching("to=<s@remote.test>")[0]
    assert "wanted: remote.test, .remote.test)" in logs.matching("name mismatch")[0]
    assert len(logs.matching("Verified TLS connection established to mail.provider.test[127.0.0.1]")) == 1
    assert len(logs.matching("Verified TLS connection established to mx.other.test[127.0.0.1]")) == 1


@pytest_twisted.ensureDeferred
async def test_encrypt_still_does_not_verify(tmp_path, ca, tls_peer, dns_port, logs):
    """encrypt: TLS with an unknown CA's certificate for another name is Untrusted but the mail goes."""
    factory, port = tls_peer(trustme.CA(), "elsewhere.test")
    await deliver(tmp_path, _settings(dns_port, "[relay.test]:%d" % port, "encrypt", tmp_path / "ca.pem"),
                  ["e@remote.test"])
    assert [r for _, r, _ in factory.received] == ["e@remote.test"]
    assert factory.protocols[0].startedTLS
    assert logs.matching("Untrusted TLS connection established to relay.test[127.0.0.1]:%d" % port)
    assert not logs.matching("verification failed")


@pytest_twisted.ensureDeferred
async def test_verify_without_starttls_and_with_a_bad_cafile(tmp_path, ca, tls_peer, dns_port, logs):
    """verify needs STARTTLS (4.7.4 when not offered); an unreadable smtp_tls_CAfile defers with 4.7.5."""
    plain = SMTPPeer()
    listening = reactor.listenTCP(0, plain, interface="127.0.0.1")
    peer, tls_port = tls_peer(ca, "relay.test")
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    try:
        await deliver(tmp_path / "1", _settings(dns_port, "[relay.test]:%d" % listening.getHost().port, "verify",
                                                tmp_path / "ca.pem"), ["p@remote.test"])
        await deliver(tmp_path / "2", _settings(dns_port, "[relay.test]:%d" % tls_port, "verify",
                                                tmp_path / "bad.pem"), ["q@remote.test"])
    finally:
        listening.stopListening()
    assert "dsn=4.7.4, status=deferred (TLS is required, but was not offered by host relay.test[127.0.0.1])" \
        in logs.matching("to=<p@remote.test>")[0]
    assert "status=deferred (TLS is required, but our TLS engine is unavailable)" \
        in logs.matching("to=<q@remote.test>")[0]
    assert logs.matching("warning: cannot load Certificate Authority data from %s" % (tmp_path / "bad.pem"))
    assert plain.received == [] and peer.received == []


def test_name_matching_rules():
    """Postfix's match_servername: exact names, one-label wildcards, .domain for sub-domains, IP literals."""
    patterns = match_patterns(["nexthop", "dot-nexthop"], "mx.provider.test", "example.test")
    assert patterns == ["example.test", ".example.test"]
    assert match_patterns(["hostname", ".Literal.test"], "MX.provider.test", "x") == ["mx.provider.test",
                                                                                     ".literal.test"]
    assert matching_name(["mx1.example.test"], patterns) == "mx1.example.test"
    assert matching_name(["example.test.evil"], patterns) is None
    assert matching_name(["*.example.test"], ["mx.example.test"]) == "*.example.test"
    assert matching_name(["*.example.test"], ["a.mx.example.test"]) is None
    assert matching_name(["*.example.test"], [".example.test"]) == "*.example.test"
    assert matching_name(["127.0.0.1"], ["127.0.0.1"]) == "127.0.0.1"
    assert matching_name(["127.0.0.1"], [".0.0.1"]) is None
    cert = x509.load_pem_x509_certificate(trustme.CA().issue_cert("Mail.Example.test", "127.0.0.1").cert_chain_pems[0]
                                          .bytes())
    assert certificate_names(cert) == ["mail.example.test", "127.0.0.1"]
