# -*- test-case-name: tests.cleanup.test_headers -*-
"""Streaming header processing: find the header block, add what is missing, pass the body on.

:class:`HeaderStream` sits between the SMTP server and the queue file.
It holds only the primary header block, and at most
``header_size_limit`` bytes of it (Postfix discards header text beyond
that limit; here the excess ends header processing and is passed on as
body text, so nothing the client sent is lost and memory stays bounded).
The body is passed through untouched, chunk by chunk.

The header block ends at the first empty line, or at the first line
that is neither a header field (``name:``) nor a continuation line
(RFC 5322 §2.2, §3.5).  At that point the missing headers are appended
(:meth:`HeaderStream.missing_headers` decides which, see
:mod:`mailstack.cleanup`).  ``Received:`` is written by the caller before
any content, as Postfix's smtpd does.
"""

import re

_FIELD_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:")


class HeaderStream:
    """Split a message into its header block and body while it streams.

    Args:
        out: called with bytes to store.
        limit: ``header_size_limit``.
        on_headers: called once with the list of header field names (lower
            case) and the header values by name; returns bytes to insert after
            the header block (missing headers, CRLF line ends).
        rewrite: optional; called with the header block (bytes), returns the
            block to store (address rewriting in headers).
    """

    def __init__(self, out, limit, on_headers, rewrite=None):
        self._rewrite = rewrite
        self._out = out
        self._limit = limit
        self._on_headers = on_headers
        self._buf = bytearray()
        self._in_body = False
        self._scanned = 0  # where the first line not yet known to be a header starts
        self.size = 0

    def feed(self, data):
        """Take a piece of message content."""
        self.size += len(data)
        if self._in_body:
            self._out(data)
            return
        self._buf += data
        self._scan()

    def _scan(self):
        buf = self._buf
        pos = self._scanned
        while True:
            end = buf.find(b"\n", pos)
            if end < 0:
                if len(buf) > self._limit:
                    self._finish_headers(pos)
                return
            line = bytes(buf[pos:end + 1])
            stripped = line.rstrip(b"\r\n")
            if not stripped:
                # The empty line that separates header and body stays in the body.
                self._finish_headers(pos)
                return
            if pos and line[:1] in (b" ", b"\t"):
                pos = self._scanned = end + 1
                continue
            if not _FIELD_RE.match(stripped):
                self._finish_headers(pos)
                return
            if end + 1 > self._limit:
                self._finish_headers(pos)
                return
            pos = self._scanned = end + 1

    def _finish_headers(self, pos):
        """End header processing at ``pos``: store the headers, the added ones, then the rest."""
        block = bytes(self._buf[:pos])
        rest = bytes(self._buf[pos:])
        self._buf = bytearray()
        self._in_body = True
        fields = parse_fields(block)
        added = self._on_headers(fields)
        if block and self._rewrite is not None:
            block = self._rewrite(block)
        if block:
            self._out(block)
        if added:
            self._out(added)
        if rest:
            self._out(rest)

    def close(self):
        """The message ended: finish a header block that had no body."""
        if not self._in_body:
            if self._buf and not self._buf.endswith(b"\n"):
                self._buf += b"\r\n"
            self._finish_headers(len(self._buf))


def parse_fields(block):
    """Return ``[(name_lower, value_text)]`` for a header block (unfolded, decoded leniently)."""
    fields = []
    for raw in re.split(rb"\r?\n(?![ \t])", block):
        if not raw.strip():
            continue
        match = _FIELD_RE.match(raw)
        if not match:
            continue
        name = match.group(1).decode("ascii", "replace").lower()
        value = raw[match.end():].decode("utf-8", "replace")
        value = re.sub(r"\r?\n[ \t]", " ", value).strip()
        fields.append((name, value))
    return fields


def split_header_block(block):
    """Split a header block into its logical header fields (bytes, folding and line ends kept)."""
    return [f for f in re.split(rb"(?<=\n)(?![ \t])", block) if f]
