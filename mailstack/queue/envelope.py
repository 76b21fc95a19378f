# -*- test-case-name: tests.queue.test_qfile -*-
"""The envelope of a queued message: sender, recipients and where it came from.

This is the in-memory half of the queue contract (``docs/queue.md``):
the SMTP server, ``cleanup``, ``pickup`` and ``sendmail`` build an
:class:`Envelope` and pass it to
:meth:`mailstack.queue.QueueFileWriter.commit`; the queue manager reads it
back from the queue file.  Addresses are kept as given (no angle
brackets); the null sender is the empty string.
"""

from dataclasses import dataclass, field


@dataclass
class Recipient:
    """One envelope recipient.

    Attributes:
        address: the final envelope recipient after rewriting.
        original: the address as the client gave it (``orig_to=`` in logs,
            ``Original-Recipient`` fallback in DSNs); empty when the same.
        orcpt: the DSN ORCPT parameter in ``rfc822;addr`` form, or "".
        notify: DSN NOTIFY: ``()`` for the default, else a subset of
            ``("SUCCESS", "FAILURE", "DELAY")`` or ``("NEVER",)``.
    """

    address: str
    original: str = ""
    orcpt: str = ""
    notify: tuple = ()


@dataclass
class Envelope:
    """Everything about a message that is not its content.

    Attributes:
        sender: the envelope sender; "" for the null sender ``<>``.
        recipients: a list of :class:`Recipient`.
        arrival_time: seconds since the epoch; the queue fills it in when 0.
        client_name: the client's reverse name, or "unknown".
        client_address: the client's IP address.
        helo: the HELO/EHLO argument.
        protocol: SMTP, ESMTP, ESMTPS, ESMTPSA... as in ``Received:``.
        sasl_username: the authenticated user, or "".
        envid: DSN ENVID.
        ret: DSN RET: "", "FULL" or "HDRS".
        body_type: "", "7BIT", "8BITMIME" or "BINARYMIME".
        smtputf8: whether the client asked for SMTPUTF8.
    """

    sender: str
    recipients: list = field(default_factory=list)
    arrival_time: float = 0.0
    client_name: str = ""
    client_address: str = ""
    helo: str = ""
    protocol: str = "ESMTP"
    sasl_username: str = ""
    envid: str = ""
    ret: str = ""
    body_type: str = ""
    smtputf8: bool = False


# Envelope attributes stored as "A name=value" records, in file order.
ATTRIBUTES = ("client_name", "client_address", "helo", "protocol", "sasl_username",
              "envid", "ret", "body_type", "smtputf8")
