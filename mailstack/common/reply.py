# -*- test-case-name: tests.smtpd.test_reply -*-
"""Reply-carrying exceptions: how deep code says "answer the client this".

Code anywhere in the SMTP path (address parsing, restrictions, lookups,
cleanup) raises :class:`Reject` with an SMTP reply code, an RFC 3463
enhanced status code and a text; the protocol catches it once, at the
command boundary, and sends ``CODE DSN TEXT``.  :func:`reject` picks the
subclass from the code: :class:`TemporaryReject` for 4xx,
:class:`PermanentReject` for 5xx.

An unexpected exception is never turned into a 5xx: the protocol answers
``451 4.3.0 Error: internal error`` (:data:`INTERNAL_ERROR`) and logs one
traceback.

RFCs: RFC 5321 §4.2 (reply codes), RFC 3463 (enhanced status codes),
RFC 2034 (ENHANCEDSTATUSCODES).
"""


class Reject(Exception):
    """A reply to send instead of the normal one.

    Attributes:
        code: the three-digit SMTP reply code (int).
        dsn: the enhanced status code, e.g. ``"5.7.1"``.
        text: the reply text, without code and status.
    """

    def __init__(self, code, dsn, text):
        super().__init__(code, dsn, text)
        self.code = int(code)
        self.dsn = dsn
        self.text = text

    @property
    def temporary(self):
        """True for a 4xx reply."""
        return 400 <= self.code < 500

    def reply(self):
        """Return the reply as one ``"CODE DSN TEXT"`` string (no line end)."""
        return "%d %s %s" % (self.code, self.dsn, self.text)

    def __str__(self):
        return self.reply()


class TemporaryReject(Reject):
    """A 4xx reply: try again later."""


class PermanentReject(Reject):
    """A 5xx reply: do not try again."""


def reject(code, dsn, text):
    """Return the :class:`Reject` subclass instance that fits ``code``.

    Args:
        code: a 4xx or 5xx reply code (int or str).
        dsn: the enhanced status code; its class digit is made to agree with
            the code (``550`` with ``4.1.1`` becomes ``5.1.1``), as Postfix does.
        text: the reply text.
    """
    code = int(code)
    if dsn and dsn[0] in "245" and str(code)[0] in "245":
        dsn = str(code)[0] + dsn[1:]
    cls = TemporaryReject if 400 <= code < 500 else PermanentReject
    return cls(code, dsn, text)


INTERNAL_ERROR = TemporaryReject(451, "4.3.0", "Error: internal error")
