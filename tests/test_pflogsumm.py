"""The maillog of a whole running server reads correctly in pflogsumm, as Postfix's does."""

import shutil
import smtplib
import socket
import subprocess

import pytest

from tests.conftest import run_cli
from tests.queue.server import Server

PFLOGSUMM = shutil.which("pflogsumm")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _totals(report):
    totals = {}
    for line in report.split("Grand Totals")[1].split("Per-Day")[0].splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            totals[" ".join(parts[1:]).split(" (")[0]] = int(parts[0])
    return totals


@pytest.mark.skipif(PFLOGSUMM is None, reason="pflogsumm is not installed")
def test_smtp_and_submission_counted_by_pflogsumm(config_dir, tmp_path):
    """Mail received on smtp and submission, an RCPT reject and the deliveries are all counted by pflogsumm."""
    assert run_cli("--config", config_dir, "user", "add", "alice@example.test", "--password", "secret")[0] == 0
    smtp, submission = _free_port(), _free_port()
    (config_dir / "master.cf").write_text(
        "smtp tcp:%d:interface=127.0.0.1\n"
        "submission tcp:%d:interface=127.0.0.1 -o smtpd_sasl_auth_enable=yes\n"
        "qmgr -\n" % (smtp, submission))
    server = Server(config_dir, tmp_path / "maillog")
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", smtp) as client:
            client.sendmail("someone@remote.test", ["alice@example.test"], b"Subject: one\r\n\r\nhi\r\n")
            with pytest.raises(smtplib.SMTPRecipientsRefused):  # unknown local user: 550 at RCPT
                client.sendmail("someone@remote.test", ["nobody@example.test"], b"Subject: two\r\n\r\nhi\r\n")
        with smtplib.SMTP("127.0.0.1", submission) as client:
            client.login("alice@example.test", "secret")
            client.sendmail("alice@example.test", ["alice@example.test"], b"Subject: three\r\n\r\nhi\r\n")
        server.wait_for("", predicate=lambda: server.log().count("status=sent") == 2)
    finally:
        server.stop()
    log = server.log()
    assert " mailstack/smtpd[" in log and " mailstack/submission/smtpd[" in log
    report = subprocess.run([PFLOGSUMM, "--syslog-name=mailstack", str(server.log_path)],
                            capture_output=True, text=True, timeout=30).stdout
    totals = _totals(report)
    assert totals["received"] == 2
    assert totals["delivered"] == 2
    assert totals["rejected"] == 1
