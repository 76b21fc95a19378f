"""Interop: mailstack's SMTP client delivers to a real Postfix (ESMTP, DSN parameters, per-recipient replies)."""

import time

import pytest_twisted
from twisted.internet import reactor, threads

from mailstack.agents.smtp import SMTPAgent
from mailstack.queue.envelope import Recipient
from tests.interop.postfix import postfix_factory  # noqa: F401 (pytest fixture)
from tests.queue.harness import Harness, LogCapture


def _wait(predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


@pytest_twisted.ensureDeferred
async def test_delivery_to_postfix_with_dsn_parameters(tmp_path, postfix_factory):  # noqa: F811
    """Postfix accepts mail with ENVID/RET/NOTIFY/ORCPT from the agent and delivers it; an unknown user bounces."""
    postfix = postfix_factory(mailboxes=["joe@example.test"], main_cf={"debug_peer_list": "127.0.0.1"})
    await threads.deferToThread(postfix.start)
    logs = LogCapture().start()
    try:
        h = Harness(tmp_path, "relayhost = [127.0.0.1]:%d\n" % postfix.port)
        h.agents["smtp"] = SMTPAgent(h.config, reactor)
        h.qmgr.start()
        await h.submit("alice@mail.example.test",
                       [Recipient("joe@example.test", orcpt="rfc822;Joe+x@example.test", notify=("FAILURE",)),
                        Recipient("nobody@example.test")],
                       b"Subject: from mailstack\n\n.dot line\nbody\n", envid="ENV 1", ret="HDRS")
        await h.settle()
        await h.qmgr.stop()
    finally:
        logs.stop()
    assert await threads.deferToThread(_wait, lambda: postfix.maildir_messages("joe@example.test"))
    message = postfix.maildir_messages("joe@example.test")[0]
    assert b"Subject: from mailstack" in message and b"\n.dot line\nbody\n" in message.replace(b"\r\n", b"\n")
    sent = logs.matching("to=<joe@example.test>")[0]
    assert "relay=127.0.0.1[127.0.0.1]:%d" % postfix.port in sent and "status=sent (250 2.0.0 Ok: queued as" in sent
    assert "status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1" in logs.matching("to=<nobody@example.test>")[0]
    # Postfix's peer debugging logs the commands it received: the DSN parameters in xtext.
    log = postfix.log()
    assert "MAIL FROM:<alice@mail.example.test> SIZE=" in log and "RET=HDRS ENVID=ENV+201" in log
    assert "RCPT TO:<joe@example.test> NOTIFY=FAILURE ORCPT=rfc822;Joe+2Bx@example.test" in log
