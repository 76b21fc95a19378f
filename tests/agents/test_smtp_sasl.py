"""The SMTP client's SASL login to a relayhost: mailstack's own smtpd with AUTH as the provider, on loopback."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from mailstack.agents import smtp_sasl
from mailstack.tables.registry import Tables
from tests.agents.smtp_peer import deliver, listen_dns
from tests.smtpd.conftest import PASSWORD, smtp_config_dir, smtpd  # noqa: F401 (pytest fixtures)

# The provider: AUTH for everyone, relaying only for authenticated clients (loopback is not in mynetworks).
PROVIDER = {"smtpd_sasl_auth_enable": "yes", "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
            "auth_failure_delay": "0", "mynetworks": "192.0.2.0/24", "smtpd_tls_security_level": "may"}


@pytest.fixture
def provider(smtp_config_dir, smtpd):
    """Start the provider's smtpd offering ``mechanisms`` (auth_mechanisms is process-wide: set in main.cf)."""
    async def start(mechanisms="plain login cram-md5 scram-sha-1 scram-sha-256"):
        with open(smtp_config_dir / "main.cf", "a") as handle:
            handle.write("auth_mechanisms = %s\nauth_failure_delay = 0\n" % mechanisms)
        return await smtpd(**PROVIDER)
    return start


def _client(port, password=PASSWORD, extra=""):
    return ("relayhost = [127.0.0.1]:%d\nsmtp_sasl_auth_enable = yes\n"
            "smtp_sasl_password_maps = inline:{ [127.0.0.1]:%d=joe@example.test:%s }\n%s"
            % (port, port, password, extra))


def _no_secret(*line_lists, secret=PASSWORD):
    return not [line for lines in line_lists for line in lines if secret in line]


@pytest_twisted.ensureDeferred
async def test_login_prefers_scram_and_the_provider_relays(tmp_path, provider, logs):
    """With a password for [host]:port the client logs in with SCRAM-SHA-256 and the provider relays the mail."""
    server = await provider()
    await deliver(tmp_path, _client(server.port), ["friend@remote.example"],
                  sasl_password_maps="smtp_sasl_password_maps")
    [queued] = server.queued()
    assert queued.envelope.sasl_username == "joe@example.test"
    assert [r.recipient.address for r in queued.recipients] == ["friend@remote.example"]
    assert server.logs.grep("sasl_method=SCRAM-SHA-256, sasl_username=joe@example.test")
    assert "status=sent (250 " in logs.matching("to=<friend@remote.example>")[0]
    assert _no_secret(logs.lines, server.logs.lines)


@pytest_twisted.ensureDeferred
async def test_mechanism_filter_chooses_among_the_offered(tmp_path, provider, logs):
    """smtp_sasl_mechanism_filter = cram-md5, login keeps CRAM-MD5 as the best allowed; a filter that leaves
    nothing skips AUTH (warning) and the provider refuses to relay."""
    server = await provider()
    await deliver(tmp_path / "1", _client(server.port, extra="smtp_sasl_mechanism_filter = cram-md5, login\n"),
                  ["one@remote.example"], sasl_password_maps="smtp_sasl_password_maps")
    assert server.logs.grep("sasl_method=CRAM-MD5, sasl_username=joe@example.test")
    await deliver(tmp_path / "2", _client(server.port, extra="smtp_sasl_mechanism_filter = gssapi\n"),
                  ["two@remote.example"], sasl_password_maps="smtp_sasl_password_maps")
    assert logs.matching("warning: 127.0.0.1[127.0.0.1]:%d offered no supported AUTH mechanisms: "
                         "'PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256'" % server.port)
    refused = logs.matching("to=<two@remote.example>, relay=")[0]
    assert "status=bounced (host 127.0.0.1[127.0.0.1] said: 554 5.7.1" in refused
    assert len(server.queued()) == 1


@pytest_twisted.ensureDeferred
async def test_wrong_password_defers_with_the_server_reply_and_no_secret(tmp_path, provider, logs):
    """A 535 defers (smtp_sasl_auth_soft_bounce = yes) with Postfix's text; with soft bounce off it bounces;
    the password appears in no log line."""
    server = await provider()
    h, queue_id = await deliver(tmp_path / "1", _client(server.port, password="Wr0ngSecret"), ["x@remote.example"],
                                sasl_password_maps="smtp_sasl_password_maps")
    line = logs.matching("to=<x@remote.example>")[0]
    assert "relay=127.0.0.1[127.0.0.1]:%d" % server.port in line
    assert ("dsn=4.7.8, status=deferred (SASL authentication failed; server 127.0.0.1[127.0.0.1] said: "
            "535 5.7.8 Error: authentication failed: authentication failure)") in line
    assert queue_id in h.queue.list("deferred")
    await deliver(tmp_path / "2", _client(server.port, password="Wr0ngSecret",
                                          extra="smtp_sasl_auth_soft_bounce = no\n"),
                  ["y@remote.example"], sasl_password_maps="smtp_sasl_password_maps")
    assert "dsn=5.7.8, status=bounced (SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8" \
        in logs.matching("to=<y@remote.example>")[0]
    assert server.queued() == []
    assert _no_secret(logs.lines, server.logs.lines, secret="Wr0ngSecret")


@pytest_twisted.ensureDeferred
async def test_noplaintext_refuses_plain_and_login_without_tls(tmp_path, provider, logs):
    """A provider offering only PLAIN and LOGIN on a plaintext session: no AUTH is sent, the mail is deferred."""
    server = await provider("plain login")
    await deliver(tmp_path, _client(server.port), ["z@remote.example"], sasl_password_maps="smtp_sasl_password_maps")
    assert ("dsn=4.7.0, status=deferred (SASL authentication failed; cannot authenticate to server "
            "127.0.0.1[127.0.0.1]: no mechanism available)") in logs.matching("to=<z@remote.example>")[0]
    assert not server.logs.grep("]: SASL ") and not server.logs.grep("sasl_method")
    assert server.queued() == []


@pytest_twisted.ensureDeferred
async def test_plain_over_verified_tls_needs_the_tls_security_options(tmp_path, provider, smtp_config_dir, logs):
    """After STARTTLS PLAIN is used only when smtp_sasl_tls_security_options allows it (Postfix's default
    follows smtp_sasl_security_options, i.e. noplaintext); the provider's certificate is verified."""
    server = await provider("plain login")
    dns = listen_dns(reactor, {}, {"mail.example.test": "127.0.0.1"})
    tls = ("smtp_dns_servers = 127.0.0.1:%d\nsmtp_tls_security_level = verify\nsmtp_tls_CAfile = %s\n"
           % (dns.getHost().port, smtp_config_dir / "tls" / "ca.pem"))
    client = ("relayhost = [mail.example.test]:%d\nsmtp_sasl_auth_enable = yes\n"
              "smtp_sasl_password_maps = inline:{ mail.example.test=joe@example.test:%s }\n%s"
              % (server.port, PASSWORD, tls))
    try:
        await deliver(tmp_path / "1", client, ["tls1@remote.example"], sasl_password_maps="smtp_sasl_password_maps")
        await deliver(tmp_path / "2", client + "smtp_sasl_tls_security_options = noanonymous\n",
                      ["tls2@remote.example"], sasl_password_maps="smtp_sasl_password_maps")
    finally:
        dns.stopListening()
    assert "cannot authenticate to server mail.example.test[127.0.0.1]: no mechanism available" \
        in logs.matching("to=<tls1@remote.example>")[0]
    assert "status=sent" in logs.matching("to=<tls2@remote.example>")[0]
    assert len(logs.matching("Verified TLS connection established to mail.example.test[127.0.0.1]:%d"
                             % server.port)) == 2
    [queued] = server.queued()
    assert queued.envelope.protocol == "ESMTPSA" and queued.envelope.sasl_username == "joe@example.test"
    assert server.logs.grep("sasl_method=PLAIN, sasl_username=joe@example.test")
    assert _no_secret(logs.lines, server.logs.lines)


@pytest_twisted.ensureDeferred
async def test_no_password_for_the_host_means_no_auth(tmp_path, provider, logs):
    """Without a password for this server the client does not AUTH (as Postfix): the provider refuses to relay."""
    server = await provider()
    settings = ("relayhost = [127.0.0.1]:%d\nsmtp_sasl_auth_enable = yes\n"
                "smtp_sasl_password_maps = inline:{ [127.0.0.1]:1=joe@example.test:%s }\n" % (server.port, PASSWORD))
    await deliver(tmp_path, settings, ["n@remote.example"], sasl_password_maps="smtp_sasl_password_maps")
    assert "status=bounced (host 127.0.0.1[127.0.0.1] said: 554 5.7.1 <n@remote.example>: Recipient address " \
        "rejected: Access denied" in logs.matching("to=<n@remote.example>, relay=")[0]
    assert not server.logs.grep("]: SASL ") and not server.logs.grep("sasl_method")


@pytest_twisted.ensureDeferred
async def test_password_lookup_order(tmp_path):
    """smtp_sasl_password_maps is searched for the host name first, then the next hop as written; keys fold case."""
    tables = Tables(reactor, str(tmp_path))
    both = tables.maps(("inline:{ relay.test=host:one, [relay.test]:587=nexthop:two }",))
    nexthop_only = tables.maps(("inline:{ [relay.test]:587=nexthop:two, relay.test:587=x:y, [relay.test]=z:w }",))
    domain = tables.maps(("inline:{ example.test=dom:p:with:colons }",))
    try:
        assert smtp_sasl.password_keys("Relay.Test", "[relay.test]:587") == ["relay.test", "[relay.test]:587"]
        assert await smtp_sasl.find_password(both, "relay.test", "[relay.test]:587") == ("host", "one")
        assert await smtp_sasl.find_password(nexthop_only, "relay.test", "[Relay.test]:587") == ("nexthop", "two")
        assert await smtp_sasl.find_password(nexthop_only, "relay.test", "relay.test:587") == ("x", "y")
        assert await smtp_sasl.find_password(nexthop_only, "relay.test", "relay.test") is None
        # After an MX lookup: the MX host name, then the recipient domain.
        assert await smtp_sasl.find_password(domain, "mx1.example.test", "example.test") == ("dom", "p:with:colons")
    finally:
        tables.close()


def test_mechanism_choice_and_security_options():
    """Preference SCRAM-SHA-256 > SCRAM-SHA-1 > CRAM-MD5 > PLAIN > LOGIN within what the options allow."""
    offered = smtp_sasl.offered_mechanisms({"AUTH": "AUTH login PLAIN CRAM-MD5", "AUTH=LOGIN": "AUTH=LOGIN"})
    assert offered == ["LOGIN", "PLAIN", "CRAM-MD5"]
    default = smtp_sasl.check_security_options(("noplaintext", "noanonymous"), "p")
    assert smtp_sasl.choose_mechanism(offered, default) == "CRAM-MD5"
    assert smtp_sasl.choose_mechanism(offered, frozenset({"noactive"})) is None
    assert smtp_sasl.choose_mechanism(["PLAIN", "LOGIN"], frozenset({"noanonymous"})) == "PLAIN"
    assert smtp_sasl.choose_mechanism(["CRAM-MD5", "SCRAM-SHA-1"], frozenset({"mutual_auth"})) == "SCRAM-SHA-1"
    assert smtp_sasl.filter_mechanisms(offered, ("plain", "login")) == ["LOGIN", "PLAIN"]
    with pytest.raises(ValueError, match="unknown SASL security option 'noplain'"):
        smtp_sasl.check_security_options(("noplain",), "smtp_sasl_security_options")


@pytest.mark.parametrize("tamper", [False, True])
@pytest_twisted.ensureDeferred
async def test_scram_server_signature_is_checked(tmp_path, logs, tamper):
    """A server sending SCRAM's server-final as a 334 challenge gets an empty answer and is believed only when its
    signature proves it knows the password; a wrong one cancels the login (4.7.0) and nothing is sent."""
    from mailstack.auth.service import AuthService
    from tests.agents.smtp_peer import AuthPeer
    from tests.queue.harness import Harness
    (tmp_path / "passwd").write_text("joe@example.test:{PLAIN}%s::::::\n" % PASSWORD)
    server_config = Harness(tmp_path / "server", "passdb = passwd-file:%s/passwd\nuserdb = static:uid=1 gid=1\n"
                            "auth_mechanisms = scram-sha-256\nauth_failure_delay = 0\n" % tmp_path).config
    peer = AuthPeer(AuthService(server_config, reactor), tamper_final=tamper)
    listening = reactor.listenTCP(0, peer, interface="127.0.0.1")
    try:
        await deliver(tmp_path / "client", _client(listening.getHost().port), ["s@remote.example"],
                      sasl_password_maps="smtp_sasl_password_maps")
    finally:
        listening.stopListening()
    line = logs.matching("to=<s@remote.example>")[0]
    if tamper:
        assert "dsn=4.7.0, status=deferred (SASL authentication failed; cannot authenticate to server " \
            "127.0.0.1[127.0.0.1]: server signature does not verify" in line
        assert peer.received == [] and "MAIL" not in peer.commands
    else:
        assert "status=sent (250 2.0.0 Ok: queued)" in line
        assert [user for user, _ in peer.received] == ["joe@example.test"]
    assert _no_secret(logs.lines)


def test_configuration_errors(tmp_path):
    """smtp_sasl_auth_enable without smtp_sasl_password_maps, or an unknown security option, stops startup."""
    from mailstack.agents.smtp import SMTPAgent
    from mailstack.config.maincf import ConfigError
    from tests.queue.harness import Harness
    config = Harness(tmp_path / "1", "smtp_sasl_auth_enable = yes\n").config
    with pytest.raises(ConfigError, match="specify a password table via the smtp_sasl_password_maps"):
        SMTPAgent(config, reactor)
    config = Harness(tmp_path / "2", "smtp_sasl_tls_security_options = noanonymous, plaintext_ok\n").config
    with pytest.raises(ConfigError, match="smtp_sasl_tls_security_options: unknown SASL security option"):
        SMTPAgent(config, reactor)
