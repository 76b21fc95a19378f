# -*- test-case-name: tests.bounce.test_dsn -*-
"""Build RFC 3464 delivery status notifications (multipart/report).

A notice has three parts (RFC 3462 ``multipart/report``;
``report-type=delivery-status``):

1. a human-readable explanation (text/plain), in Postfix's wording;
2. the ``message/delivery-status`` report: per-message fields
   (``Reporting-MTA``, ``Original-Envelope-Id``, ``Arrival-Date``) then one
   block per recipient (``Final-Recipient``, ``Original-Recipient``,
   ``Action``, ``Status``, ``Diagnostic-Code``, ``Will-Retry-Until`` for
   delays), RFC 3464 §2.2 and §2.3;
3. the original message (``message/rfc822``), cut at ``bounce_size_limit``
   bytes, or only its headers (``text/rfc822-headers``) when the sender
   asked ``RET=HDRS`` and for delay warnings and success notices.

Nothing here does I/O; :mod:`mailstack.bounce.notices` queues the result.
"""

import email.utils
import time
from dataclasses import dataclass

KINDS = {
    "failure": ("Undelivered Mail Returned to Sender", "failed"),
    "delay": ("Delayed Mail (still being retried)", "delayed"),
    "success": ("Successful Mail Delivery Report", "delivered"),
}

_INTRO = {
    "failure": ("I'm sorry to have to inform you that your message could not\n"
                "be delivered to one or more recipients. It's attached below.\n\n"
                "For further assistance, please send mail to postmaster.\n\n"
                "If you do so, please include this problem report. You can\n"
                "delete your own text from the attached returned message.\n"),
    "delay": ("####################################################################\n"
              "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
              "####################################################################\n\n"
              "Your message could not be delivered for {delay} hours.\n"
              "It will be retried until it is {lifetime} days old.\n\n"
              "For further assistance, please send mail to postmaster.\n"),
    "success": ("Your message was successfully delivered to the destination(s)\n"
                "listed below. If the message was delivered to mailbox you will\n"
                "receive no further notifications. Otherwise you may still receive\n"
                "notifications of mail delivery errors from other systems.\n"),
}


@dataclass
class RecipientReport:
    """One recipient's line in a report.

    Attributes:
        address: the final recipient.
        original: the ORCPT (``rfc822;addr``) or the address the client gave, or "".
        dsn: the enhanced status code.
        text: the reason.
        relay: where it went (``local``, ``host[ip]``), for ``Remote-MTA``.
        remote: the remote SMTP reply (``Diagnostic-Code: smtp;``), or "".
    """

    address: str
    original: str
    dsn: str
    text: str
    relay: str = "none"
    remote: str = ""


def _rfc822(address):
    return address if ";" in address else "rfc822; " + address


def _headers_of(content):
    end = content.find(b"\n\n")
    return content if end < 0 else content[:end + 1]


def _cut(content, limit):
    if len(content) <= limit:
        return content
    cut = content.rfind(b"\n", 0, limit)
    return content[:cut + 1 if cut > 0 else limit]


def build(kind, *, queue_id, envelope, reports, content, hostname, mail_name="mailstack",
          to, sender_header=None, bounce_size_limit=50000, headers_only=False,
          now=None, lifetime=5 * 86400, postmaster_copy=False, boundary=None):
    """Return a notice as bytes (LF line ends), ready to queue.

    Args:
        kind: ``failure``, ``delay`` or ``success``.
        queue_id: the original message's queue id.
        envelope: the original :class:`~mailstack.queue.envelope.Envelope`.
        reports: list of :class:`RecipientReport`.
        content: the original message (bytes, LF line ends).
        hostname: ``myhostname``, for Reporting-MTA and From.
        to: the notice's recipient (the original sender, or the postmaster).
        bounce_size_limit: the most bytes of the original to return.
        headers_only: return only the original's headers.
        now: the current time (seconds).
        lifetime: ``maximal_queue_lifetime`` (for delay warnings).
        postmaster_copy: mark the subject as a postmaster copy.
    """
    now = time.time() if now is None else now
    subject, action = KINDS[kind]
    if postmaster_copy:
        subject = "Postmaster Copy: " + subject
    boundary = boundary or "%s.%d/%s" % (queue_id, int(now), hostname)
    delay_hours = max(0, int((now - envelope.arrival_time) / 3600))
    intro = _INTRO[kind].format(delay=delay_hours, lifetime=int(lifetime / 86400))
    explanation = ["This is the mail system at host %s.\n" % hostname, "", intro]
    for report in reports:
        explanation.append("<%s>: %s" % (report.address, report.text))
    head = [
        "From: %s" % (sender_header or "MAILER-DAEMON@%s (Mail Delivery System)" % hostname),
        "To: %s" % to,
        "Subject: %s" % subject,
        "Date: %s" % email.utils.formatdate(now, localtime=True),
        "Message-Id: <%s.%d@%s>" % (queue_id, int(now * 1000), hostname),
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status;\n\tboundary="%s"' % boundary,
        "Content-Transfer-Encoding: 8bit",
        "",
        "This is a MIME-encapsulated message.",
        "",
        "--" + boundary,
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "\n".join(explanation),
        "",
        "--" + boundary,
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
    ]
    # RFC 3464 §2.2: per-message fields.
    status = ["Reporting-MTA: dns; %s" % hostname, "X-Mailstack-Queue-ID: %s" % queue_id,
              "X-Mailstack-Sender: rfc822; %s" % envelope.sender]
    if envelope.envid:
        status.append("Original-Envelope-Id: %s" % envelope.envid)
    status.append("Arrival-Date: %s" % email.utils.formatdate(envelope.arrival_time, localtime=True))
    for report in reports:
        # RFC 3464 §2.3: per-recipient fields.
        status += ["", "Final-Recipient: rfc822; %s" % report.address]
        if report.original:
            status.append("Original-Recipient: %s" % _rfc822(report.original))
        status += ["Action: %s" % action, "Status: %s" % report.dsn]
        if report.remote:
            status += ["Remote-MTA: dns; %s" % report.relay.split("[")[0],
                       "Diagnostic-Code: smtp; %s" % report.remote]
        else:
            status.append("Diagnostic-Code: X-Mailstack; %s" % report.text)
        if kind == "delay":
            status.append("Will-Retry-Until: %s" % email.utils.formatdate(
                envelope.arrival_time + lifetime, localtime=True))
    head += status + [""]
    text = "\n".join(head) + "\n"
    if headers_only or kind != "failure" or envelope.ret == "HDRS":
        original = _headers_of(content)
        part = ("--%s\nContent-Description: Undelivered Message Headers\n"
                "Content-Type: text/rfc822-headers\n\n" % boundary)
    else:
        original = _cut(content, bounce_size_limit)
        part = ("--%s\nContent-Description: Undelivered Message\n"
                "Content-Type: message/rfc822\n\n" % boundary)
    if not original.endswith(b"\n"):
        original += b"\n"
    return (text + part).encode("utf-8") + original + ("\n--%s--\n" % boundary).encode()
