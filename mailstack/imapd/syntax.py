# -*- test-case-name: tests.imapd.test_syntax -*-
"""IMAP command syntax: a cursor over one complete command.

The server collects a whole command first, literals included, in wire form
(``{5}\\r\\nhello`` or ``{5+}\\r\\nhello``, RFC 3501 §4.3 and RFC 7888
LITERAL+), so that every command is parsed by the same :class:`Cursor`,
whatever argument a client chose to send as a literal.  A syntax error
raises :class:`~mailstack.imapd.errors.Bad`.

Sequence sets (RFC 3501 §9 ``sequence-set``) are kept as lists of
``(low, high)`` pairs where ``None`` stands for ``*``; :func:`resolve`
turns them into concrete numbers against the current mailbox.
"""

import re

from mailstack.imapd.errors import Bad

# RFC 3501 §9: ATOM-CHAR is any CHAR except atom-specials.
_ATOM_SPECIALS = set(b'(){ %*"\\]') | set(range(0, 32)) | {127}
_ATOM_CHARS = bytes(c for c in range(1, 128) if c not in _ATOM_SPECIALS)
_ATOM_RE = re.compile(b"[" + re.escape(_ATOM_CHARS) + b"]+")
_ASTRING_RE = re.compile(b"[" + re.escape(_ATOM_CHARS + b"]") + b"]+")
# list-mailbox = 1*list-char / string; list-char adds % and *.
_LIST_RE = re.compile(b"[" + re.escape(_ATOM_CHARS + b"]%*") + b"]+")
_TAG_RE = re.compile(b"[" + re.escape(bytes(c for c in _ATOM_CHARS if c != ord("+"))) + b"]+")
_NUMBER_RE = re.compile(rb"[0-9]+")
_WORD_RE = re.compile(rb"[A-Za-z0-9.\-]+")
_SEQ_RE = re.compile(rb"[0-9:*,]+")
LITERAL_RE = re.compile(rb"~?\{([0-9]+)(\+?)\}$")


class Cursor:
    """Parse one IMAP command from its complete wire form.

    Args:
        data: the command bytes, CRLFs and literals included, without the
            final CRLF.
    """

    def __init__(self, data):
        self.data = data
        self.pos = 0

    # -- low level ---------------------------------------------------------

    def at_end(self):
        """Return True when the whole command has been consumed."""
        return self.pos >= len(self.data)

    def peek(self, n=1):
        """Return the next ``n`` bytes without consuming them."""
        return self.data[self.pos:self.pos + n]

    def skip(self, token):
        """Consume ``token`` (case-insensitive) if it comes next; return whether it did."""
        if self.data[self.pos:self.pos + len(token)].upper() == token.upper():
            self.pos += len(token)
            return True
        return False

    def expect(self, token, what=None):
        """Consume ``token`` or raise :class:`Bad`."""
        if not self.skip(token):
            raise Bad("Expected %s" % (what or repr(token.decode("ascii", "replace"))))

    def sp(self):
        """Consume one space or raise :class:`Bad` (missing argument)."""
        if not self.skip(b" "):
            raise Bad("Missing argument" if self.at_end() else "Expected a space")

    def end(self):
        """Raise :class:`Bad` unless the command is fully consumed."""
        if not self.at_end():
            raise Bad("Unexpected extra arguments")

    def rest(self):
        """Consume and return everything left."""
        data = self.data[self.pos:]
        self.pos = len(self.data)
        return data

    def _match(self, regexp, what):
        match = regexp.match(self.data, self.pos)
        if not match:
            raise Bad("Expected %s" % what)
        self.pos = match.end()
        return match.group()

    # -- tokens ------------------------------------------------------------

    def tag(self):
        return self._match(_TAG_RE, "a tag")

    def atom(self):
        return self._match(_ATOM_RE, "an atom")

    def word(self):
        """Parse a keyword made of letters, digits, ``.`` and ``-`` (FETCH attributes, section names)."""
        return self._match(_WORD_RE, "a keyword")

    def number(self):
        return int(self._match(_NUMBER_RE, "a number"))

    def nz_number(self):
        value = self.number()
        if value == 0:
            raise Bad("Zero is not a valid number here")
        return value

    def quoted(self):
        """Parse a quoted string (RFC 3501 §4.3: backslash escapes only \\ and \")."""
        self.expect(b'"', "a quoted string")
        out = bytearray()
        data = self.data
        while True:
            if self.pos >= len(data):
                raise Bad("Unterminated quoted string")
            char = data[self.pos]
            self.pos += 1
            if char == 0x22:
                return bytes(out)
            if char == 0x5C:
                if self.pos >= len(data) or data[self.pos] not in b'"\\':
                    raise Bad("Bad escape in quoted string")
                char = data[self.pos]
                self.pos += 1
            elif char in (0x0D, 0x0A):
                raise Bad("Line break in quoted string")
            out.append(char)

    def literal(self):
        """Parse ``{N}CRLF`` + N octets (also ``{N+}`` and ``~{N}``)."""
        match = re.compile(rb"~?\{([0-9]+)\+?\}\r\n").match(self.data, self.pos)
        if not match:
            raise Bad("Expected a literal")
        size = int(match.group(1))
        start = match.end()
        if start + size > len(self.data):
            raise Bad("Truncated literal")
        self.pos = start + size
        return self.data[start:start + size]

    def string(self):
        """Parse a quoted string or a literal."""
        first = self.peek()
        if first == b'"':
            return self.quoted()
        if first in (b"{", b"~"):
            return self.literal()
        raise Bad("Expected a string")

    def astring(self):
        """Parse an astring: atom (``]`` allowed), quoted string or literal."""
        first = self.peek()
        if first in (b'"', b"{", b"~"):
            return self.string()
        return self._match(_ASTRING_RE, "a string")

    def nstring(self):
        if self.skip(b"NIL"):
            return None
        return self.string()

    def list_mailbox(self):
        """Parse a LIST pattern: list-chars (with ``%`` and ``*``) or a string."""
        first = self.peek()
        if first in (b'"', b"{", b"~"):
            return self.string()
        return self._match(_LIST_RE, "a mailbox pattern")

    def flag(self):
        """Parse a flag: ``\\Atom`` or a keyword atom; returns it as str."""
        if self.skip(b"\\"):
            if self.skip(b"*"):
                return "\\*"
            return "\\" + self.atom().decode("ascii")
        return self.atom().decode("ascii")

    def flag_list(self, allow_bare=False):
        """Parse ``(flag flag ...)``; with ``allow_bare`` also a bare flag sequence (STORE)."""
        flags = []
        if not self.skip(b"("):
            if not allow_bare:
                raise Bad("Expected a flag list")
            flags.append(self.flag())
            while self.skip(b" "):
                flags.append(self.flag())
            return flags
        if self.skip(b")"):
            return flags
        flags.append(self.flag())
        while self.skip(b" "):
            flags.append(self.flag())
        self.expect(b")", "')' after the flag list")
        return flags

    def seq_set(self):
        """Parse a sequence set into ``[(low, high), ...]``; ``None`` means ``*``."""
        text = self._match(_SEQ_RE, "a sequence set")
        ranges = []
        for piece in text.split(b","):
            bounds = piece.split(b":")
            if len(bounds) > 2 or not all(bounds):
                raise Bad("Invalid sequence set")
            values = []
            for bound in bounds:
                if bound == b"*":
                    values.append(None)
                elif bound.isdigit() and int(bound) > 0:
                    values.append(int(bound))
                else:
                    raise Bad("Invalid sequence set")
            low = values[0]
            high = values[-1]
            ranges.append((low, high))
        return ranges

    def date(self):
        """Parse a search date ``d-Mon-yyyy``, quoted or not; returns a ``datetime.date``."""
        raw = self.quoted() if self.peek() == b'"' else self.atom()
        return parse_date(raw)


_MONTHS = {m: i for i, m in enumerate(
    (b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC"), 1)}


def parse_date(raw):
    """Parse ``d-Mon-yyyy`` (RFC 3501 ``date``) into a ``datetime.date``.

    Raises:
        Bad: on a malformed date.
    """
    import datetime
    parts = raw.split(b"-")
    try:
        day, month, year = int(parts[0]), _MONTHS[parts[1].upper()], int(parts[2])
        if len(parts) != 3:
            raise ValueError(raw)
        return datetime.date(year, month, day)
    except (ValueError, KeyError, IndexError):
        raise Bad("Invalid date") from None


def resolve(ranges, largest):
    """Yield the numbers of a sequence set that exist in ``1..largest``, in ascending order, once each.

    ``*`` stands for ``largest``; RFC 3501 §6.4.8 lets ``n:m`` be given in
    either order.
    """
    if largest <= 0:
        return []
    spans = []
    for low, high in ranges:
        low = largest if low is None else low
        high = largest if high is None else high
        if low > high:
            low, high = high, low
        spans.append((low, min(high, largest)))
    spans.sort()
    result = []
    last = 0
    for low, high in spans:
        low = max(low, last + 1)
        if low <= high:
            result.extend(range(low, high + 1))
            last = high
    return result


def contains_star(ranges):
    """Return True when the set uses ``*``."""
    return any(low is None or high is None for low, high in ranges)


_QUOTED = {}     # short str -> quoted bytes: ENVELOPE/BODYSTRUCTURE repeat a few values a lot


def quote(value):
    """Return ``value`` (str or bytes) as an IMAP string: quoted when possible, else a literal."""
    if value is None:
        return b"NIL"
    if isinstance(value, str):
        done = _QUOTED.get(value)
        if done is not None:
            return done
        text = value
        value = value.encode("utf-8", "surrogateescape")
        if len(text) <= 64 and len(_QUOTED) < 8192:
            done = _QUOTED[text] = _quote_bytes(value)
            return done
    return _quote_bytes(value)


def _quote_bytes(value):
    if b"\r" in value or b"\n" in value or b"\0" in value or not value.isascii() or len(value) > 1000:
        return b"{%d}\r\n" % len(value) + value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def astring(value):
    """Return ``value`` as an atom when it is one, else quoted (mailbox names in LIST/STATUS)."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if value and _ASTRING_RE.fullmatch(value) and value.upper() != b"NIL":
        return value
    return quote(value)


def encode_list(items):
    """Encode a nested Python structure as an IMAP parenthesised list.

    ``None`` is NIL, ints are numbers, str/bytes are strings, lists nest,
    :class:`Raw` is written as is.
    """
    return b"(" + b" ".join([encode_item(item) for item in items]) + b")"


class Raw(bytes):
    """Bytes written without quoting (atoms, flags, pre-encoded parts)."""


def encode_item(item):
    encoder = _ENCODERS.get(type(item))
    if encoder is not None:
        return encoder(item)
    if isinstance(item, Raw):
        return bytes(item)
    if isinstance(item, bool):
        return b"1" if item else b"0"
    if isinstance(item, int):
        return b"%d" % item
    if isinstance(item, (list, tuple)):
        return encode_list(item)
    return quote(item)


# The exact types met in practice, dispatched without an isinstance chain.
_ENCODERS = {
    type(None): lambda item: b"NIL",
    str: quote,
    bytes: quote,
    int: lambda item: b"%d" % item,
    bool: lambda item: b"1" if item else b"0",
    list: lambda item: encode_list(item),
    tuple: lambda item: encode_list(item),
    Raw: bytes,
}
