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

import email.utils
import re

from twisted.internet import defer

from mailstack.common.address import quote_address

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
            block to store (address rewriting in headers), or a Deferred of
            it: the body is then held back until it fires, and the caller
            waits for :attr:`pending` before it commits the message.
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
        self._held = None   # body pieces waiting for an asynchronous header rewrite
        self.pending = None  # that rewrite's Deferred: wait for it before committing

    def feed(self, data):
        """Take a piece of message content."""
        self.size += len(data)
        if self._in_body:
            if self._held is not None:
                self._held.append(bytes(data))   # the header block is still being rewritten
            else:
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
            if isinstance(block, defer.Deferred):
                # Lookups in tables that do I/O: hold the body until the
                # rewritten header block can go first (see :attr:`pending`).
                self._held = [rest] if rest else []
                self.pending = block.addCallback(self._release, added)
                return
        self._emit(block, added, rest)

    def _release(self, block, added):
        held, self._held = self._held, None
        self._emit(block, added, b"".join(held))

    def _emit(self, block, added, rest):
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


# -- address fields (cleanup's header rewriting, the SMTP client's smtp_generic_maps) --

SENDER_FIELDS = (b"from", b"sender", b"reply-to", b"resent-from", b"resent-sender", b"resent-reply-to",
                  b"errors-to", b"return-receipt-to", b"disposition-notification-to")
RECIPIENT_FIELDS = (b"to", b"cc", b"bcc", b"resent-to", b"resent-cc", b"resent-bcc", b"apparently-to")

# A header value that is one plain address, bare or in angle brackets after an
# optional plain display name (what most software writes): its address is taken
# without email.utils, and a field whose address does not change is kept as is.
_ATEXT = rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+"
_SIMPLE_FIELD = re.compile(rb"^[ \t]*(?:[A-Za-z0-9 _.-]*<(" + _ATEXT + rb")>|(" + _ATEXT + rb"))[ \t]*\r?\n?$")


def field_class(name):
    """Return ``header_sender``, ``header_recipient`` or None for a field name (bytes, any case)."""
    lname = name.strip().lower()
    if lname in SENDER_FIELDS:
        return "header_sender"
    if lname in RECIPIENT_FIELDS:
        return "header_recipient"
    return None


def _field_pairs(value):
    """Return the (display, address) pairs of a field value, or None for groups and odd syntax."""
    text = value.decode("utf-8", "surrogateescape")
    pairs = email.utils.getaddresses([" ".join(text.split())])
    if not pairs or any(not address or "@" in display for display, address in pairs):
        return None
    return pairs


def field_addresses(block):
    """Return the set of ``(address, class)`` in a header block's sender and recipient fields."""
    found = set()
    for field in split_header_block(block):
        name, colon, value = field.partition(b":")
        cls = field_class(name) if colon else None
        if cls is None:
            continue
        simple = _SIMPLE_FIELD.match(value)
        if simple is not None:
            found.add(((simple.group(1) or simple.group(2)).decode("ascii"), cls))
            continue
        for _, address in _field_pairs(value) or ():
            found.add((address, cls))
    return found


def rewrite_address_fields(block, rewrite):
    """Return ``block`` with each address of From:, To:, Cc:... replaced by ``rewrite(address, class)``.

    A field whose addresses do not change keeps its exact bytes; one that
    changes is written again (``Display <address>``, one line).  Groups,
    empty fields and syntax email.utils cannot take apart are left alone.
    """
    out = []
    for field in split_header_block(block):
        name, colon, value = field.partition(b":")
        cls = field_class(name) if colon else None
        out.append(_rewrite_field(name, value, cls, rewrite) if cls else field)
    return b"".join(out)


def _rewrite_field(name, value, cls, rewrite):
    simple = _SIMPLE_FIELD.match(value)
    if simple is not None:
        address = (simple.group(1) or simple.group(2)).decode("ascii")
        if rewrite(address, cls) == address:
            return name + b":" + value
    pairs = _field_pairs(value)
    if pairs is None:
        return name + b":" + value
    new = [(display, rewrite(address, cls)) for display, address in pairs]
    if new == pairs:
        return name + b":" + value
    ending = b"\r\n" if value.endswith(b"\r\n") else b"\n" if value.endswith(b"\n") else b""
    items = []
    for display, address in new:
        address = quote_address(address)
        if not display:
            items.append(address)
        elif display.isascii():
            items.append(email.utils.formataddr((display, address)))
        else:
            items.append("%s <%s>" % (display, address))
    return name + b": " + ", ".join(items).encode("utf-8", "surrogateescape") + ending
