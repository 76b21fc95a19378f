# -*- test-case-name: tests.imapd.test_syntax -*-
"""Reply-carrying exceptions of the IMAP server.

Command handlers raise :class:`No` or :class:`Bad`; the command boundary in
:mod:`mailstack.imapd.server` turns them into the tagged ``NO``/``BAD``
reply (RFC 3501 §7.1) with an optional response code such as
``[TRYCREATE]`` or ``[CANNOT]`` (RFC 5530).  Anything else a handler raises
is our fault: it is logged with its traceback and the client gets
``NO [SERVERBUG]``, never a ``BAD`` (which would blame the client).
"""


class IMAPError(Exception):
    """A tagged non-OK reply.

    Attributes:
        status: ``b"NO"`` or ``b"BAD"``.
        text: the human-readable text (str).
        code: the response code without brackets (str), or None.
    """

    status = b"NO"

    def __init__(self, text, code=None):
        super().__init__(text)
        self.text = text
        self.code = code

    def reply(self):
        """Return the reply after the tag, e.g. ``b"NO [TRYCREATE] Mailbox doesn't exist"``."""
        code = b"[%s] " % self.code.encode() if self.code else b""
        return self.status + b" " + code + self.text.encode("utf-8", "replace")


class No(IMAPError):
    """The command was understood but failed (``NO``)."""

    status = b"NO"


class Bad(IMAPError):
    """The command is malformed or not allowed in this state (``BAD``)."""

    status = b"BAD"
