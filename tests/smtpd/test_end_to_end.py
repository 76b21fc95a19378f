"""The whole path: submission with STARTTLS + AUTH PLAIN, queue, delivery to the maildir, read over IMAP and POP3."""

import imaplib
import poplib
import smtplib
import ssl

import pytest_twisted
from twisted.internet import reactor, task

from mailstack import app
from tests.smtpd.conftest import PASSWORD

MASTER_CF = """\
submission   tcp:0:interface=127.0.0.1
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
imap         tcp:0:interface=127.0.0.1
pop3         tcp:0:interface=127.0.0.1
qmgr         -
"""


async def _port(root, name):
    listener = root.getServiceNamed(name)
    return (await list(listener)[0]._waitingForPort).getHost().port


@pytest_twisted.ensureDeferred
async def test_submission_to_maildir_to_imap_and_pop3(smtp_config_dir):
    """A message sent with STARTTLS + AUTH PLAIN through submission is delivered and read back over IMAP and POP3."""
    (smtp_config_dir / "master.cf").write_text(MASTER_CF)
    with open(smtp_config_dir / "main.cf", "a") as handle:
        handle.write("smtpd_peername_lookup = no\n")
    root = app.make_service(str(smtp_config_dir), reactor=reactor)
    root.privilegedStartService()
    root.startService()
    try:
        ports = {name: await _port(root, name) for name in ("submission", "imap", "pop3")}
        ca = str(smtp_config_dir / "tls/ca.pem")

        def submit():
            with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=10) as client:
                client.starttls(context=ssl.create_default_context(cafile=ca))
                client.login("joe@example.test", PASSWORD)
                client.sendmail("joe@example.test", ["x@example.test"],
                                b"From: joe@example.test\r\nTo: x@example.test\r\nSubject: end to end\r\n\r\n"
                                b"hello through the stack\r\n")
        await task.deferLater(reactor, 0, lambda: None)
        from twisted.internet.threads import deferToThread
        await deferToThread(submit)

        def read_imap():
            with imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=10) as client:
                client.login("x@example.test", PASSWORD)
                client.select("INBOX")
                typ, data = client.search(None, "SUBJECT", '"end to end"')
                numbers = data[0].split()
                if not numbers:
                    return None
                typ, data = client.fetch(numbers[0], "(BODY.PEEK[])")
                return data[0][1]

        message = None
        for _ in range(200):
            message = await deferToThread(read_imap)
            if message:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert message is not None, "not delivered"
        assert b"hello through the stack" in message
        assert b"with ESMTPSA id" in message

        def read_pop3():
            client = poplib.POP3("127.0.0.1", ports["pop3"], timeout=10)
            try:
                client.user("x@example.test")
                client.pass_(PASSWORD)
                count, _ = client.stat()
                return b"\n".join(client.retr(count)[1])
            finally:
                client.quit()
        popped = await deferToThread(read_pop3)
        assert b"Subject: end to end" in popped and b"hello through the stack" in popped
    finally:
        await root.stopService()


def test_encrypt_without_certificate_stops_startup(smtp_config_dir):
    """A service that must encrypt but has no certificate is a configuration error at startup."""
    import pytest
    from mailstack.config.maincf import ConfigError
    (smtp_config_dir / "master.cf").write_text(
        "submission tcp:0:interface=127.0.0.1 -o smtpd_tls_security_level=encrypt -o smtpd_tls_cert_file=\n")
    with pytest.raises(ConfigError, match=r"master.cf:1: service submission: smtpd_tls_security_level = encrypt "
                                          r"needs smtpd_tls_cert_file"):
        app.make_service(str(smtp_config_dir), reactor=reactor)
