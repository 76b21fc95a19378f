"""SMTP AUTH and TLS: no AUTH before STARTTLS on submission, SASL replies, relay for authenticated users."""

import base64
import smtplib
import socket
import ssl

import pytest
import pytest_twisted

from tests.smtpd.conftest import PASSWORD
from tests.smtpd.harness import in_thread, raw_session

SUBMISSION = {"smtpd_tls_security_level": "encrypt", "smtpd_sasl_auth_enable": "yes",
              "smtpd_tls_auth_only": "yes", "smtpd_relay_restrictions": "permit_sasl_authenticated,reject",
              "auth_failure_delay": "0", "mynetworks": "192.0.2.0/24"}


def _tls_session(port, ca_file, commands):
    """STARTTLS, then send each command line and collect each reply."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    tls = None
    try:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"EHLO c\r\n")
        plain_ehlo = _reply(f)
        sock.sendall(b"STARTTLS\r\n")
        _reply(f)
        tls = ssl.create_default_context(cafile=ca_file).wrap_socket(sock, server_hostname="localhost")
        g = tls.makefile("rb")
        replies = [plain_ehlo]
        for command in [b"EHLO c"] + commands:
            tls.sendall(command + b"\r\n")
            replies.append(_reply(g))
        return replies
    finally:
        if tls is not None:
            tls.close()
        sock.close()


def _reply(f):
    lines = []
    while True:
        line = f.readline()
        lines.append(line.decode())
        if len(line) < 4 or line[3:4] != b"-":
            return "".join(lines)


@pytest_twisted.ensureDeferred
async def test_no_auth_before_tls_on_submission(smtpd):
    """Before STARTTLS, submission neither advertises nor accepts AUTH, and refuses MAIL (530)."""
    server = await smtpd(**SUBMISSION)
    plain = "\x00joe@example.test\x00" + PASSWORD
    payload = b"EHLO c\r\nAUTH PLAIN " + base64.b64encode(plain.encode()) + b"\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n"
    out = (await in_thread(raw_session, server.port, payload, b"221 ")).decode()
    assert "AUTH" not in out.split("\r\n530")[0].split("250 ")[0]
    assert "530 5.7.0 Must issue a STARTTLS command first" in out
    assert "235" not in out


@pytest_twisted.ensureDeferred
async def test_auth_plain_after_tls_and_relay(smtpd, smtp_config_dir):
    """After STARTTLS, AUTH PLAIN succeeds (235 2.7.0) and the user may relay; the queue id line names the user."""
    server = await smtpd(**SUBMISSION)

    def send():
        context = ssl.create_default_context(cafile=str(smtp_config_dir / "tls/ca.pem"))
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.ehlo("c")
            assert "auth" not in client.esmtp_features
            client.starttls(context=context)
            client.ehlo("c")
            mechanisms = client.esmtp_features["auth"]
            client.login("joe@example.test", PASSWORD)
            return mechanisms, client.sendmail("joe@example.test", ["friend@remote.example"],
                                               b"Subject: relayed\r\n\r\nhi\r\n")
    mechanisms, refused = await in_thread(send)
    assert "PLAIN" in mechanisms and "LOGIN" in mechanisms
    assert refused == {}
    [queued] = server.queued()
    assert queued.envelope.sasl_username == "joe@example.test"
    assert queued.envelope.protocol == "ESMTPSA"
    assert server.logs.grep("%s: client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=joe@example.test"
                            % queued.queue_id)
    content = queued.read_content()
    assert b"with ESMTPSA id %s" % queued.queue_id.encode() in content
    assert b"(using TLSv1.3 with cipher" in content


@pytest_twisted.ensureDeferred
async def test_sasl_failure_cancel_and_bad_base64(smtpd, smtp_config_dir):
    """Wrong password: 535 5.7.8; '*' cancels: 501 5.7.0; undecodable response: 501 5.5.2; unknown mechanism: 504."""
    server = await smtpd(**SUBMISSION)
    bad = base64.b64encode(b"\x00joe@example.test\x00wrong")
    replies = await in_thread(_tls_session, server.port, str(smtp_config_dir / "tls/ca.pem"), [
        b"AUTH PLAIN " + bad, b"AUTH LOGIN", b"*", b"AUTH PLAIN", b"!!!notbase64", b"AUTH GSSAPI",
        b"MAIL FROM:<joe@example.test>", b"RCPT TO:<friend@remote.example>",
        b"AUTH LOGIN " + base64.b64encode(b"joe@example.test"), base64.b64encode(PASSWORD.encode())])
    assert replies[2] == "535 5.7.8 Error: authentication failed: authentication failure\r\n"
    assert replies[3].startswith("334 ")
    assert replies[4] == "501 5.7.0 Authentication aborted\r\n"
    assert replies[5] == "334 \r\n"
    assert replies[6] == "501 5.5.2 Cannot decode response\r\n"
    assert replies[7] == "504 5.5.4 Unsupported authentication mechanism\r\n"
    assert replies[9].startswith("554 5.7.1 <friend@remote.example>: Recipient address rejected: Access denied")
    assert replies[10] == "503 5.5.1 Error: MAIL transaction in progress\r\n"
    assert server.logs.grep("unknown[127.0.0.1]: SASL PLAIN authentication failed")


@pytest_twisted.ensureDeferred
async def test_auth_login_with_initial_response(smtpd, smtp_config_dir):
    """AUTH LOGIN with the user name as initial response asks only for the password."""
    server = await smtpd(**SUBMISSION)
    replies = await in_thread(_tls_session, server.port, str(smtp_config_dir / "tls/ca.pem"), [
        b"AUTH LOGIN " + base64.b64encode(b"joe@example.test"), base64.b64encode(PASSWORD.encode()),
        b"AUTH PLAIN"])
    assert replies[2] == "334 UGFzc3dvcmQ6\r\n"
    assert replies[3] == "235 2.7.0 Authentication successful\r\n"
    assert replies[4] == "503 5.5.1 Error: already authenticated\r\n"


@pytest_twisted.ensureDeferred
async def test_auth_disabled_by_default(smtpd):
    """On the smtp service (smtpd_sasl_auth_enable = no) AUTH is not offered and is refused."""
    server = await smtpd()
    out = (await in_thread(raw_session, server.port, b"EHLO c\r\nAUTH PLAIN\r\nQUIT\r\n", b"221 ")).decode()
    assert "AUTH" not in out.split("503")[0]
    assert "503 5.5.1 Error: authentication not enabled" in out


@pytest.mark.parametrize("level", ["none"])
@pytest_twisted.ensureDeferred
async def test_plaintext_auth_refused_off_tls(smtpd, level):
    """Without TLS and with smtpd_tls_auth_only = no, plaintext mechanisms follow disable_plaintext_auth (loopback counts as secure)."""
    server = await smtpd(smtpd_sasl_auth_enable="yes", smtpd_tls_security_level=level, auth_failure_delay="0")
    plain = base64.b64encode(("\x00joe@example.test\x00" + PASSWORD).encode())
    out = (await in_thread(raw_session, server.port, b"EHLO c\r\nAUTH PLAIN " + plain + b"\r\nQUIT\r\n",
                           b"221 ")).decode()
    assert "250-AUTH PLAIN LOGIN" in out
    assert "235 2.7.0 Authentication successful" in out


@pytest_twisted.ensureDeferred
async def test_smtps_implicit_tls_auth(smtp_config_dir):
    """smtps (implicit TLS, port 465 style): the session is TLS from the start, AUTH works, no STARTTLS offered."""
    from tests.smtpd.harness import start_smtpd
    server = await start_smtpd(smtp_config_dir, service="smtps", implicit_tls=True, smtpd_sasl_auth_enable="yes",
                               smtpd_relay_restrictions="permit_sasl_authenticated,reject", auth_failure_delay="0",
                               mynetworks="192.0.2.0/24")
    try:
        def send():
            context = ssl.create_default_context(cafile=str(smtp_config_dir / "tls/ca.pem"))
            with smtplib.SMTP_SSL("127.0.0.1", server.port, context=context, timeout=10) as client:
                client.ehlo("c")
                features = dict(client.esmtp_features)
                client.login("joe@example.test", PASSWORD)
                client.sendmail("joe@example.test", ["far@remote.example"], b"Subject: smtps\r\n\r\nx\r\n")
                return features
        features = await in_thread(send)
        assert "starttls" not in features and "PLAIN" in features["auth"]
        [queued] = server.queued()
        assert queued.envelope.protocol == "ESMTPSA"
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_scram_server_signature_sent_as_a_final_challenge(smtpd, smtp_config_dir):
    """SCRAM-SHA-256: the server's signature comes as one more 334 (RFC 4954 §4), the client checks it, then 235."""
    from mailstack.auth.mechs.client import ScramClient
    with open(str(smtp_config_dir / "main.cf"), "a") as handle:
        handle.write("auth_mechanisms = plain login scram-sha-256\n")   # read by the shared auth service
    server = await smtpd(**SUBMISSION)

    def login():
        context = ssl.create_default_context(cafile=str(smtp_config_dir / "tls/ca.pem"))
        scram = ScramClient("sha256", "joe@example.test", PASSWORD)
        challenges = []

        def answer(challenge=None):
            if challenge is None:
                return scram.start().decode()
            challenges.append(challenge)
            if len(challenges) == 1:
                return scram.respond(challenge).decode()
            scram.finish(challenge)   # raises when the signature does not verify
            return ""
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.ehlo("c")
            client.starttls(context=context)
            client.ehlo("c")
            assert "SCRAM-SHA-256" in client.esmtp_features["auth"]
            code, text = client.auth("SCRAM-SHA-256", answer)
            return code, text, challenges
    code, text, challenges = await in_thread(login)
    assert code == 235 and b"2.7.0" in text
    assert len(challenges) == 2 and challenges[1].startswith(b"v=")
