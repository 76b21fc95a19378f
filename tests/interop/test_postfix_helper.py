"""The real-Postfix helper itself: start from a temporary directory, take mail over SMTP, log, stop."""

import smtplib
import time

from tests.interop.postfix import postfix_factory  # noqa: F401 (pytest fixture)


def _wait(predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_postfix_delivers_to_a_maildir_and_stops(postfix_factory):  # noqa: F811 (fixture argument)
    """A helper Postfix accepts a message on its loopback port, delivers it to a maildir, logs it and stops cleanly."""
    postfix = postfix_factory(mailboxes=["joe@example.test"])
    postfix.start()
    assert postfix.running
    assert postfix.postconf("-h", "virtual_mailbox_domains").strip() == "example.test"
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=15) as client:
        refused = client.sendmail("sender@example.org", ["Joe@example.test"],
                                  b"Subject: helper test\r\n\r\nhello from the helper test\r\n")
        assert refused == {}
        assert client.mail("sender@example.org")[0] == 250
        assert client.rcpt("nobody@example.test")[0] == 550   # not one of the mailboxes
    assert _wait(lambda: postfix.maildir_messages("joe@example.test"))
    message = postfix.maildir_messages("joe@example.test")[0]
    assert b"Subject: helper test" in message and b"hello from the helper test" in message
    assert postfix.wait_for_log(r"(?i)to=<joe@example\.test>, relay=virtual.*status=sent")
    assert postfix.wait_for_log(r"postfix/master\[\d+\]: daemon started")
    postfix.stop()
    assert not postfix.running
