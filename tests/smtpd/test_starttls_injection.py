"""STARTTLS command injection (CVE-2011-0411): plaintext pipelined after STARTTLS is discarded."""

import socket
import ssl

import pytest_twisted

from tests.smtpd.harness import in_thread


def _inject(port, ca_file):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    tls = None
    try:
        sock.recv(1000)
        sock.sendall(b"EHLO c\r\n")
        data = b""
        while b"250 " not in data:
            data += sock.recv(4096)
        # The attacker's commands ride in the same packet as STARTTLS.
        sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<x@example.test>\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(1)
        context = ssl.create_default_context(cafile=ca_file)
        tls = context.wrap_socket(sock, server_hostname="localhost")
        tls.sendall(b"EHLO c\r\n")
        after = b""
        while b"250 " not in after:
            after += tls.recv(4096)
        tls.sendall(b"RCPT TO:<x@example.test>\r\nQUIT\r\n")
        rest = b""
        while b"221 " not in rest:
            chunk = tls.recv(4096)
            if not chunk:
                break
            rest += chunk
        return reply, after, rest
    finally:
        if tls is not None:
            tls.close()
        sock.close()


@pytest_twisted.ensureDeferred
async def test_pipelined_plaintext_after_starttls_is_discarded(smtpd, smtp_config_dir):
    """Commands sent in plaintext after STARTTLS are never executed inside the TLS session."""
    server = await smtpd()
    reply, after, rest = await in_thread(_inject, server.port, str(smtp_config_dir / "tls/ca.pem"))
    assert reply == b"220 2.0.0 Ready to start TLS\r\n"
    # No reply to the injected MAIL/RCPT arrives after the handshake: the first reply is EHLO's.
    assert after.startswith(b"250-mail.example.test\r\n")
    assert b"STARTTLS" not in after
    # The state was reset: there is no MAIL transaction the injected MAIL FROM could have opened.
    assert rest.startswith(b"503 5.5.1 Error: need MAIL command\r\n")
    assert server.logs.grep("discarding 56 bytes of plaintext pipelined after STARTTLS")


@pytest_twisted.ensureDeferred
async def test_starttls_errors(smtpd):
    """STARTTLS with an argument is a syntax error; without a certificate it is not offered."""
    from tests.smtpd.harness import raw_session
    server = await smtpd(smtpd_tls_security_level="none")
    out = await in_thread(raw_session, server.port, b"EHLO c\r\nSTARTTLS x\r\nSTARTTLS\r\nQUIT\r\n", b"221 ")
    assert b"STARTTLS\r\n" not in out.split(b"501")[0]
    assert b"501 5.5.4 Syntax: STARTTLS" in out
    assert b"502 5.5.1 Error: command not implemented" in out


@pytest_twisted.ensureDeferred
async def test_encrypt_level_requires_starttls(smtpd):
    """With smtpd_tls_security_level = encrypt, MAIL before STARTTLS gets 530 5.7.0."""
    from tests.smtpd.harness import raw_session
    server = await smtpd(smtpd_tls_security_level="encrypt")
    out = await in_thread(raw_session, server.port, b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nQUIT\r\n", b"221 ")
    assert b"530 5.7.0 Must issue a STARTTLS command first" in out
