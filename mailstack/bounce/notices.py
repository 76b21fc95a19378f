# -*- test-case-name: tests.bounce.test_notices -*-
"""Decide who gets which notice, and queue it (Postfix bounce(8) policy).

* **Bounces** go to the sender, from the null sender ``<>``, for recipients
  whose DSN NOTIFY is the default or includes FAILURE.  Mail from the null
  sender never gets a bounce: its failure is a *double bounce*, sent to
  ``2bounce_notice_recipient`` when ``notify_classes`` has ``2bounce``
  (from ``double_bounce_sender``, whose own failures are discarded), and
  otherwise only logged.
* **Delay warnings** go to the sender for NOTIFY default or DELAY, never
  for the null sender.
* **Success notices** go to the sender for NOTIFY=SUCCESS.
* ``notify_classes``: ``bounce`` and ``delay`` send the postmaster a copy
  with the original's headers only (``bounce_notice_recipient``,
  ``delay_notice_recipient``); ``resource`` and ``software`` send
  ``error_notice_recipient`` a short text notice about the problem.

Each queued notice is logged as Postfix does:
``QUEUEID: sender non-delivery notification: NEWID``.

Parameters read: ``notify_classes``, ``bounce_size_limit``,
``double_bounce_sender``, ``bounce_notice_recipient``,
``2bounce_notice_recipient``, ``delay_notice_recipient``,
``error_notice_recipient``, ``maximal_queue_lifetime``, ``myhostname``,
``mail_name``.
"""

import email.utils

from twisted.logger import Logger

from mailstack.bounce import dsn
from mailstack.queue.envelope import Envelope, Recipient

log = Logger(namespace="mailstack.bounce")

PARAMS = ("notify_classes", "bounce_size_limit", "double_bounce_sender", "bounce_notice_recipient",
          "2bounce_notice_recipient", "delay_notice_recipient", "error_notice_recipient",
          "maximal_queue_lifetime", "myhostname", "mail_name")

_LOG_NAMES = {"failure": "non-delivery notification", "delay": "delay notification",
              "success": "delivery status notification", "resource": "resource notification",
              "software": "software notification"}


def wants(notify, kind):
    """Return True when a recipient's DSN NOTIFY asks for a notice of ``kind``."""
    if "NEVER" in notify:
        return False
    if kind == "success":
        return "SUCCESS" in notify
    if not notify:
        return True
    return {"failure": "FAILURE", "delay": "DELAY"}[kind] in notify


class Bouncer:
    """Queue notices about a message.

    Args:
        queue: the :class:`~mailstack.queue.MailQueue` notices are written to.
        config: the main.cf configuration.
        clock: gives ``seconds()`` (the reactor, or a Clock in tests).
    """

    def __init__(self, queue, config, clock):
        self._queue = queue
        self._config = config
        self._clock = clock
        self.hostname = config["myhostname"]
        self.classes = set(c.lower() for c in config["notify_classes"])
        self.double_bounce = self._qualify(config["double_bounce_sender"])

    def _qualify(self, address):
        return address if "@" in address else "%s@%s" % (address, self.hostname)

    def is_double_bounce_sender(self, address):
        return address.lower() == self.double_bounce.lower()

    async def _queue_notice(self, queue_id, kind, who, sender, to, text):
        if "@" not in to:
            to = "%s@%s" % (to, self._config["myorigin"])
        writer = self._queue.new_message()
        try:
            writer.write(text)
            new_id = await writer.commit(Envelope(sender, [Recipient(to)], client_name="localhost",
                                                  client_address="127.0.0.1", protocol="local"))
        except Exception:
            writer.abort()
            raise
        log.info("{queue_id}: {who} {what}: {new_id}", queue_id=queue_id, who=who,
                 what=_LOG_NAMES.get(kind, kind), new_id=new_id)
        return new_id

    def _build(self, kind, queue_id, envelope, reports, content, to, **extra):
        return dsn.build(kind, queue_id=queue_id, envelope=envelope, reports=reports, content=content,
                         hostname=self.hostname, mail_name=self._config["mail_name"], to=to,
                         bounce_size_limit=self._config["bounce_size_limit"], now=self._clock.seconds(),
                         lifetime=self._config["maximal_queue_lifetime"], **extra)

    async def notify(self, kind, queue_id, envelope, reports, content):
        """Send the notices ``kind`` (failure, delay, success) about ``reports``.

        Args:
            reports: list of ``(notify, RecipientReport)`` pairs.
            content: the original message.

        Returns:
            list of the queue ids of the notices queued.

        Raises:
            QueueError: when a notice cannot be queued (the caller keeps the
                recipients pending and tries again later).
        """
        chosen = [report for notify, report in reports if wants(notify, kind)]
        queued = []
        sender = envelope.sender
        if kind == "failure" and (not sender or self.is_double_bounce_sender(sender)):
            if sender or "2bounce" not in self.classes:
                log.info("{queue_id}: undeliverable {what} discarded", queue_id=queue_id,
                         what="postmaster notification" if sender else "bounce")
                return queued
            to = self._config["2bounce_notice_recipient"]
            text = self._build(kind, queue_id, envelope, [r for _, r in reports], content, to,
                               postmaster_copy=True)
            queued.append(await self._queue_notice(queue_id, kind, "postmaster", self.double_bounce, to, text))
            return queued
        if not sender:
            return queued
        if chosen:
            text = self._build(kind, queue_id, envelope, chosen, content, sender)
            queued.append(await self._queue_notice(queue_id, kind, "sender", "", sender, text))
        copy_class = {"failure": "bounce", "delay": "delay"}.get(kind)
        if copy_class in self.classes:
            to = self._config["bounce_notice_recipient" if kind == "failure" else "delay_notice_recipient"]
            text = self._build(kind, queue_id, envelope, [r for _, r in reports], content, to,
                               headers_only=True, postmaster_copy=True)
            queued.append(await self._queue_notice(queue_id, kind, "postmaster", self.double_bounce, to, text))
        return queued

    async def problem(self, problem_class, queue_id, text):
        """Tell the postmaster about a ``resource`` or ``software`` problem, when notify_classes says so.

        Returns:
            the notice's queue id, or None when the class is not enabled.
        """
        if problem_class not in self.classes:
            return None
        to = self._config["error_notice_recipient"]
        now = self._clock.seconds()
        body = ("From: MAILER-DAEMON@%s (Mail Delivery System)\nTo: %s\n"
                "Subject: Mail system %s problem\nDate: %s\nAuto-Submitted: auto-generated\n\n"
                "The mail system at host %s reports a %s problem:\n\n%s: %s\n"
                % (self.hostname, to, problem_class, email.utils.formatdate(now, localtime=True),
                   self.hostname, problem_class, queue_id or "NOQUEUE", text)).encode("utf-8")
        return await self._queue_notice(queue_id or "NOQUEUE", problem_class, "postmaster", self.double_bounce,
                                        to, body)
