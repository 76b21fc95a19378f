"""RFC 3464 delivery status notifications: structure, size limit, RET=HDRS, notify rules."""

import email
import email.policy

import pytest

from mailstack.bounce.dsn import RecipientReport, build
from mailstack.bounce.notices import wants
from mailstack.queue.envelope import Envelope, Recipient

ORIGINAL = b"From: a@example.org\nSubject: original\n\n" + b"line of body text\n" * 200


def _build(kind="failure", **kw):
    env = Envelope("a@example.org", [Recipient("b@example.com")], arrival_time=1700000000.0, envid="ENV1",
                   ret=kw.pop("ret", ""))
    reports = [RecipientReport("b@example.com", "rfc822;B@Example.com", "5.1.1", "unknown user: \"b\"")]
    return build(kind, queue_id="4ABCDEFGHJKLMNPQRS", envelope=env, reports=reports, content=ORIGINAL,
                 hostname="mail.example.test", to="a@example.org", now=1700003600.0, **kw)


def test_failure_report_has_three_parts_and_rfc3464_fields():
    """A bounce is multipart/report with text, message/delivery-status and the returned message."""
    msg = email.message_from_bytes(_build(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "message/rfc822"]
    status = parts[1].as_string()
    for field in ("Reporting-MTA: dns; mail.example.test", "Original-Envelope-Id: ENV1",
                  "Final-Recipient: rfc822; b@example.com", "Original-Recipient: rfc822;B@Example.com",
                  "Action: failed", "Status: 5.1.1"):
        assert field in status
    assert "Subject: original" in parts[2].as_string()


def test_bounce_size_limit_cuts_the_returned_message():
    """The returned message is cut at bounce_size_limit bytes on a line boundary."""
    text = _build(bounce_size_limit=500)
    returned = text.split(b"Content-Type: message/rfc822\n\n", 1)[1]
    assert len(returned) < 600 and returned.count(b"line of body text") < 30


def test_ret_hdrs_and_delay_notices_return_headers_only():
    """RET=HDRS and delay warnings return text/rfc822-headers without the body."""
    for text in (_build(ret="HDRS"), _build("delay")):
        assert b"Content-Type: text/rfc822-headers" in text
        assert b"line of body text" not in text
    assert b"Action: delayed" in _build("delay") and b"Will-Retry-Until:" in _build("delay")


@pytest.mark.parametrize("notify,kind,expected", [
    ((), "failure", True), ((), "delay", True), ((), "success", False),
    (("SUCCESS",), "success", True), (("SUCCESS",), "failure", False),
    (("NEVER",), "failure", False), (("FAILURE", "DELAY"), "delay", True),
], ids=["default-failure", "default-delay", "default-success", "success", "success-only",
        "never", "failure-delay"])
def test_notify_rules(notify, kind, expected):
    """DSN NOTIFY decides which notices a recipient gets (RFC 3461 §4.1)."""
    assert wants(notify, kind) is expected
