# -*- test-case-name: tests.pop3d.test_transfer -*-
"""Message bytes as POP3 sends them: CRLF line ends, byte-stuffing, TOP cuts.

Maildir files are stored with LF line ends (a file written by another
program may hold CRLF already); POP3 sends every line ending in CRLF, and a
line that begins with ``.`` gets a second ``.`` (RFC 1939 §3).  The octet
counts of STAT and LIST are the CRLF sizes *without* the stuffing dots: this
is Dovecot's "virtual size", which the store keeps in the ``,W=`` field of a
maildir file name so that a listing never reads a message.

:class:`Stuffer` transforms a message chunk by chunk, so that a big message
streams with bounded memory: a CR at the end of one chunk may begin a CRLF
pair that ends in the next, and a ``.`` at the start of a chunk is stuffed
only when the previous chunk ended a line.  :func:`top_lines` returns the
headers and the first N body lines for TOP (RFC 1939 §7), reading only as
much of the file as it needs.

Both keep bare CRs as they are, as Dovecot does: only LF and CRLF end lines.
"""

CHUNK = 64 * 1024


class Stuffer:
    """Turn a stored message into POP3 multi-line data, incrementally.

    ``feed(chunk)`` returns the bytes to send for that chunk; ``finish()``
    returns the rest, a final CRLF when the message did not end a line, and
    the terminating ``.`` line.  ``octets`` counts the message bytes sent
    (CRLF line ends, stuffing dots and terminator not counted), which equals
    the virtual size announced by LIST.
    """

    def __init__(self):
        self._carry = b""
        self._line_start = True
        self.octets = 0

    def feed(self, chunk):
        """Return the wire bytes for the next ``chunk`` of the stored message."""
        data = self._carry + chunk
        if data.endswith(b"\r"):
            # Maybe the first half of a CRLF that ends in the next chunk.
            self._carry, data = b"\r", data[:-1]
        else:
            self._carry = b""
        return self._convert(data)

    def _convert(self, data):
        if not data:
            return b""
        if b"\r\n" in data:
            data = data.replace(b"\r\n", b"\n")
        lines = data.count(b"\n")
        self.octets += len(data) + lines
        if self._line_start and data[:1] == b".":
            data = b"." + data
        self._line_start = data[-1:] == b"\n"
        return data.replace(b"\n.", b"\n..").replace(b"\n", b"\r\n")

    def finish(self):
        """Return the remaining bytes, the line end if missing, and ``.CRLF``."""
        tail = self._convert(self._carry)
        self._carry = b""
        if not self._line_start:
            tail += b"\r\n"
            self._line_start = True
        return tail + b".\r\n"


def stuff(message):
    """Return a whole stored message as POP3 multi-line data, terminator included.

    The same bytes as :class:`Stuffer` gives, in fewer passes: this is the
    RETR path of nearly every message.
    """
    if b"\r" in message:
        stuffer = Stuffer()
        return stuffer.feed(message) + stuffer.finish()
    if message[:1] == b".":
        message = b"." + message
    if b"\n." in message:
        message = message.replace(b"\n.", b"\n..")
    if message and message[-1:] != b"\n":
        message += b"\n"
    return message.replace(b"\n", b"\r\n") + b".\r\n"


def _header_end(text):
    """Return the offset just past the blank line ending the header, or -1 (``text`` has LF ends)."""
    if text.startswith(b"\n"):
        return 1
    index = text.find(b"\n\n")
    return -1 if index < 0 else index + 2


def top_lines(handle, lines):
    """Return the header and the first ``lines`` body lines of a message as POP3 data.

    Args:
        handle: the message file, opened in binary mode.
        lines: how many body lines to include (0 gives the header and blank line).

    Returns:
        The wire bytes including the terminating ``.CRLF``.
    """
    raw = b""
    while True:
        chunk = handle.read(CHUNK)
        raw += chunk
        text = raw.replace(b"\r\n", b"\n")
        end = _header_end(text)
        if end >= 0:
            cut = end
            for _ in range(lines):
                newline = text.find(b"\n", cut)
                if newline < 0:
                    cut = -1
                    break
                cut = newline + 1
            if cut >= 0:
                return stuff(text[:cut])
        if not chunk:
            return stuff(text)
