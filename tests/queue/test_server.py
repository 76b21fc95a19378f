"""End to end: sendmail while the server is stopped, pickup and delivery at start, maillog read by pflogsumm."""

import os
import subprocess

import pytest

from tests.conftest import subprocess_env
from tests.queue.server import Server, prepare

MESSAGE = b"Subject: hello\n\nhello world\n"


def _sendmail(config_dir, *args, data=MESSAGE):
    return subprocess.run(["mailstack", "--config", str(config_dir), "sendmail"] + list(args), input=data,
                          capture_output=True, env=subprocess_env(), timeout=30)


def _maildir(config_dir, domain, user):
    new = config_dir / "mail" / domain / user / "Maildir" / "new"
    return sorted(p.read_bytes() for p in new.iterdir()) if new.is_dir() else []


@pytest.fixture
def server(config_dir, tmp_path):
    """A queue-only server on an init'ed configuration (not started)."""
    prepare(config_dir, extra="relayhost = [127.0.0.1]:1\n")
    srv = Server(config_dir, tmp_path / "maillog")
    yield srv
    srv.stop()


def test_sendmail_while_stopped_then_delivery_and_pflogsumm(server, config_dir):
    """Mail submitted while the server is down is picked up, delivered, bounced or deferred, and pflogsumm counts it."""
    assert _sendmail(config_dir, "-f", "root@example.test", "alice@example.test").returncode == 0
    assert _sendmail(config_dir, "-f", "root@example.test", "nobody@example.test").returncode == 0
    assert _sendmail(config_dir, "-oi", "-t", "-f", "root@example.test",
                     data=b"To: someone@remote.invalid\nBcc: alice@example.test\nSubject: t\n\nbody\n.\nmore\n"
                     ).returncode == 0
    assert len(list((config_dir / "queue" / "maildrop").iterdir())) == 3
    server.start()
    server.wait_for("", predicate=lambda: len(_maildir(config_dir, "example.test", "alice")) == 2
                    and server.log().count(": removed") >= 3 and "status=deferred" in server.log())
    server.stop()
    log = server.log()
    first, second = _maildir(config_dir, "example.test", "alice")
    assert b"Delivered-To: alice@example.test\n" in first and b"Message-Id: <" in first
    bcc_copy = first if b"more" in first else second
    assert b"Bcc:" not in bcc_copy and b"\n.\nmore\n" in bcc_copy
    assert "mailstack/pickup[" in log and " uid=0 from=<root@example.test>" in log
    assert 'status=bounced (unknown user: "nobody@example.test")' in log
    assert "status=deferred (connect to 127.0.0.1[127.0.0.1]:1: Connection refused)" in log
    summary = subprocess.run(["pflogsumm", "--syslog-name=mailstack", str(server.log_path)],
                             capture_output=True, text=True, timeout=30).stdout
    totals = {}
    for line in summary.split("Grand Totals")[1].split("bytes received")[0].splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            totals[" ".join(parts[1:]).split(" (")[0]] = int(parts[0])
    assert totals["received"] == 3  # the submissions; notices are not "received", as in Postfix
    assert totals["delivered"] == 2
    assert totals["bounced"] >= 1
    assert totals["deferred"] == 1


def test_sendmail_bs_speaks_smtp_on_stdio(config_dir):
    """sendmail -bs runs an SMTP session on standard input/output and queues the message."""
    prepare(config_dir)
    assert subprocess.run(["mailstack", "--config", str(config_dir), "postmap", str(config_dir / "virtual")],
                          env=subprocess_env(), capture_output=True).returncode == 0
    session = (b"EHLO me\r\nMAIL FROM:<root@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
               b"Subject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    result = _sendmail(config_dir, "-bs", data=session)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert out.startswith("220 ") and "\r\n221 2.0.0" in out
    queue_id = out.split("queued as ")[1].split()[0]
    assert (config_dir / "queue" / "incoming" / queue_id).exists()


def test_sendmail_goes_through_cleanup(server, config_dir):
    """A sendmail message gets cleanup's envelope rewriting (virtual aliases) and its local Received: header."""
    # init's virtual table sends postmaster@example.test to postmaster@localhost; send it on to alice.
    with open(config_dir / "virtual", "a") as handle:
        handle.write("list@example.test  alice@example.test\n")
    assert subprocess.run(["mailstack", "--config", str(config_dir), "postmap", str(config_dir / "virtual")],
                          env=subprocess_env(), capture_output=True).returncode == 0
    assert _sendmail(config_dir, "-f", "root@example.test", "list@example.test").returncode == 0
    server.start()
    server.wait_for("", predicate=lambda: len(_maildir(config_dir, "example.test", "alice")) == 1)
    server.stop()
    (message,) = _maildir(config_dir, "example.test", "alice")
    log = server.log()
    assert "to=<alice@example.test>, orig_to=<list@example.test>" in log
    assert b"Received: by mail.example.test (mailstack, from userid %d)" % os.getuid() in message
    assert message.count(b"Received:") == 1
    assert b"Message-Id: <" in message and b"Date: " in message and b"From: root@example.test" in message
    # the pickup line carries the queue id the message was queued under, as in Postfix
    queue_id = log.split(": uid=")[0].rsplit(" ", 1)[1]
    assert "%s: to=<alice@example.test>" % queue_id in log


def test_sendmail_mail_loop_goes_to_hold(server, config_dir):
    """A sendmail message cleanup refuses for good (too many hops) is kept in hold/, visible to mailq."""
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("hopcount_limit = 3\n")
    looped = b"".join(b"Received: from hop%d.example by x; Mon, 23 Nov 2026 10:00:00 +0000\n" % i for i in range(3))
    assert _sendmail(config_dir, "-f", "root@example.test", "alice@example.test",
                     data=looped + b"Subject: loop\n\nbody\n").returncode == 0
    server.start()
    server.wait_for("moved to the hold queue")
    server.stop()
    assert list((config_dir / "queue" / "maildrop").iterdir()) == []
    (held,) = list((config_dir / "queue" / "hold").iterdir())
    assert "Error: too many hops" in server.log()
    mailq = subprocess.run(["mailstack", "--config", str(config_dir), "mailq"], capture_output=True, text=True,
                           env=subprocess_env(), timeout=30).stdout
    assert held.name + "!" in mailq
