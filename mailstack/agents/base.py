# -*- test-case-name: tests.agents.test_simple -*-
"""What the queue manager hands a delivery agent, and what it gets back.

``agent.deliver(request)`` is a coroutine returning a list of
:class:`DeliveryStatus`, one per recipient of the request, in any order.
An agent that fails unexpectedly (an exception) has all its recipients
deferred with ``4.3.0`` by the queue manager, and the error is logged
once with its traceback: a bug never bounces mail.
"""

from dataclasses import dataclass, field


@dataclass
class DeliveryRecipient:
    """One recipient of a delivery request.

    Attributes:
        index: the recipient's position in the queue file (its id).
        address: the address to deliver to (after resolution).
        original: the address the client gave (``orig_to=``).
        notify: DSN NOTIFY values.
        orcpt: DSN ORCPT.
    """

    index: int
    address: str
    original: str = ""
    notify: tuple = ()
    orcpt: str = ""


@dataclass
class DeliveryRequest:
    """One delivery: a message, a destination, its recipients.

    Attributes:
        queue_id: the message's queue id.
        envelope: its :class:`~mailstack.queue.envelope.Envelope`.
        transport: the transport name it resolved to.
        nexthop: the transport's argument (host, domain or error text).
        recipients: list of :class:`DeliveryRecipient`.
        read_content: ``async () -> bytes``: the message content, LF line ends
            (read in a thread, once per message).
        size: content size in bytes.
    """

    queue_id: str
    envelope: object
    transport: str
    nexthop: str
    recipients: list
    read_content: object
    size: int = 0
    flushed: bool = False


@dataclass
class DeliveryStatus:
    """The outcome for one recipient.

    Attributes:
        index: the recipient's :attr:`DeliveryRecipient.index`.
        action: ``sent``, ``deferred`` or ``bounced``.
        dsn: the enhanced status code (``2.0.0``, ``4.4.1``, ``5.1.1``).
        text: the reason, as logged inside ``status=... (text)``.
        relay: the ``relay=`` field (``local``, ``none``, ``host[ip]:port``).
        remote: the remote server's reply for DSN ``Diagnostic-Code`` ("" if none).
        forwarded: queue ids of messages this delivery created (alias forwarding).
        problem: ``resource`` or ``software`` when the failure is the mail
            system's own (disk, file system, bug): the queue manager tells
            the postmaster per ``notify_classes``.
    """

    index: int
    action: str
    dsn: str
    text: str
    relay: str = "none"
    remote: str = ""
    forwarded: list = field(default_factory=list)
    problem: str = ""

    @classmethod
    def sent(cls, rcpt, text, relay, dsn="2.0.0"):
        return cls(rcpt.index, "sent", dsn, text, relay)

    @classmethod
    def deferred(cls, rcpt, text, relay="none", dsn="4.3.0"):
        return cls(rcpt.index, "deferred", dsn, text, relay)

    @classmethod
    def bounced(cls, rcpt, text, relay="none", dsn="5.0.0"):
        return cls(rcpt.index, "bounced", dsn, text, relay)


class DeliveryError(Exception):
    """A reply-carrying failure inside an agent.

    Args:
        dsn: the enhanced status code; its first digit says temporary (4) or permanent (5).
        text: the reason.
    """

    def __init__(self, dsn, text, problem=""):
        super().__init__("%s %s" % (dsn, text))
        self.dsn = dsn
        self.text = text
        self.problem = problem

    @property
    def temporary(self):
        return self.dsn.startswith("4")

    def status(self, rcpt, relay):
        """Return the :class:`DeliveryStatus` this error means for ``rcpt``."""
        action = "deferred" if self.temporary else "bounced"
        return DeliveryStatus(rcpt.index, action, self.dsn, self.text, relay, problem=self.problem)
