# -*- test-case-name: tests.imapd.test_fetch -*-
"""A byte-exact MIME view of a message for FETCH and SEARCH.

IMAP clients ask for exact octets (``BODY[1.2.MIME]``, ``BODY[HEADER]``,
partial fetches), and the sizes in BODYSTRUCTURE must match what they then
receive, so a message is never re-serialised: :class:`Entity` slices the
original bytes (CRLF line ends, as the store hands them out) and only uses
the stdlib ``email`` parser to read header fields.

Section numbering follows RFC 3501 §6.4.5: the parts of a multipart are
numbered from 1; a non-multipart message has one part, itself; the parts of
an encapsulated ``message/rfc822`` are those of the message inside it.
"""

import base64
import binascii
import email.errors
import email.header
import email.utils
import quopri
import re
import urllib.parse

_FOLD = re.compile(r"\r?\n[ \t]")
_PARAM = re.compile(r'\s*;\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.S)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_NAME = re.compile(rb"^([^:\s]+)[ \t]*:", re.M)


def split_header(data):
    """Return ``(header, body)``: the header includes the empty line that ends it."""
    if data.startswith(b"\r\n") or data.startswith(b"\n"):
        cut = 2 if data.startswith(b"\r\n") else 1
        return data[:cut], data[cut:]
    match = _HEADER_END.search(data)
    if match is None:
        return data, b""
    return data[:match.end()], data[match.end():]


def header_fields(header):
    """Return the header's fields as ``[(name_bytes, raw_field_bytes_with_crlf), ...]``."""
    fields = []
    current = None
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and current is not None:
            current[1] += line
            continue
        name = line.split(b":", 1)[0].strip()
        current = [name, line]
        fields.append(current)
    return [(name, raw) for name, raw in fields]


def filter_header(header, names, negate):
    """Return the header fields named (or, with ``negate``, not named) in ``names``, plus the blank line.

    RFC 3501 §6.4.5 HEADER.FIELDS: the result keeps the original field
    order and octets and always ends with the empty line.
    """
    wanted = {n.lower() for n in names}
    out = [raw for name, raw in header_fields(header)
           if (name.decode("ascii", "replace").lower() in wanted) != negate]
    return b"".join(out) + b"\r\n"


def lines_of(data):
    """Return the number of lines in ``data`` (RFC 3501 body-fld-lines)."""
    count = data.count(b"\n")
    if data and not data.endswith(b"\n"):
        count += 1
    return count


class Entity:
    """One MIME entity (the message, or a body part) over the original bytes.

    Attributes:
        data: the entity's octets: header, empty line, body.
        header: the header bytes (with its final empty line).
        body: the body bytes.
        fields: the parsed header (an ``email.message.Message`` without a body).
    """

    def __init__(self, data, default_type=("text", "plain")):
        self.data = data
        self.header, self.body = split_header(data)
        self.fields = Headers(self.header)
        self._default_type = default_type
        self._parts = None
        self._inner = None

    # -- content type -------------------------------------------------------

    @property
    def content_type(self):
        """Return ``(maintype, subtype)`` in lower case, with RFC 2045 defaults."""
        value = self.fields.get("content-type")
        if value is None:
            return self._default_type
        main, slash, sub = value.split(";", 1)[0].strip().lower().partition("/")
        if not slash or not main or not sub or " " in main:
            return ("text", "plain")  # RFC 2045 §5.2: a malformed type means text/plain
        return main, sub.strip()

    @property
    def boundary(self):
        return dict(self.params()).get("BOUNDARY")

    @property
    def is_multipart(self):
        return self.content_type[0] == "multipart" and bool(self.boundary)

    @property
    def is_message(self):
        return self.content_type == ("message", "rfc822")

    def params(self, header="content-type"):
        """Return the parameters of a header (Content-Type by default) as ``[(NAME, value), ...]``."""
        value = self.fields.get(header)
        if value is None:
            if header == "content-type" and self.content_type == ("text", "plain"):
                return [("CHARSET", "us-ascii")]
            return []
        return parse_params(value)

    def field(self, name):
        """Return the raw (unfolded, undecoded) value of header ``name``, or None."""
        return self.fields.get(name)

    # -- structure --------------------------------------------------------------

    def parts(self):
        """Return the child entities of a multipart (empty for other types)."""
        if self._parts is None:
            self._parts = []
            if self.is_multipart:
                default = ("message", "rfc822") if self.content_type[1] == "digest" else ("text", "plain")
                self._parts = [Entity(raw, default) for raw in _split_multipart(self.body, self.boundary)]
        return self._parts

    def inner(self):
        """Return the encapsulated message of a message/rfc822 entity, else None."""
        if self._inner is None and self.is_message:
            self._inner = Entity(self.body)
        return self._inner

    def part(self, numbers):
        """Return the entity for a section part number list like ``[1, 2]``.

        Raises:
            LookupError: when the part does not exist.
        """
        entity = self
        for number in numbers:
            if entity.is_message:
                entity = entity.inner()
            if entity.is_multipart:
                parts = entity.parts()
                if not 1 <= number <= len(parts):
                    raise LookupError(number)
                entity = parts[number - 1]
            elif number != 1:
                raise LookupError(number)
        return entity

    # -- text for SEARCH ------------------------------------------------------------

    def decoded_header(self, name):
        """Return every value of header ``name``, RFC 2047-decoded, joined by newlines."""
        return "\n".join(decode_words(v) for v in self.fields.get_all(name))

    def all_headers_text(self):
        """Return the whole header, decoded, for TEXT searches."""
        return "\n".join("%s: %s" % (k, decode_words(v)) for k, v in self.fields.items())

    def body_text(self):
        """Return the decoded text of every text leaf, for BODY/TEXT searches."""
        if self.is_multipart:
            return "\n".join(part.body_text() for part in self.parts())
        if self.is_message:
            inner = self.inner()
            return inner.all_headers_text() + "\n" + inner.body_text()
        encoding = (self.field("content-transfer-encoding") or "7bit").strip().lower()
        data = self.body
        try:
            if encoding == "base64":
                data = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", data) + b"==")
            elif encoding == "quoted-printable":
                data = quopri.decodestring(data)
        except (binascii.Error, ValueError):
            data = self.body
        if self.content_type[0] != "text":
            return ""
        charset = dict(self.params()).get("CHARSET", "us-ascii")
        try:
            return data.decode(charset, "replace")
        except LookupError:
            return data.decode("utf-8", "replace")


class Headers:
    """The fields of a header: case-insensitive lookup of unfolded values.

    Values are str; octets that are not UTF-8 are kept as surrogate escapes,
    so that :func:`mailstack.imapd.syntax.quote` sends them back unchanged.
    """

    __slots__ = ("_items", "_index")

    def __init__(self, header):
        self._items = []
        self._index = {}
        for name, raw in header_fields(header):
            value = raw.split(b":", 1)[1] if b":" in raw else b""
            text = value.decode("utf-8", "surrogateescape")
            if "\n" in text:
                text = _FOLD.sub(" ", text)
            text = text.strip()
            key = name.decode("ascii", "surrogateescape")
            self._items.append((key, text))
            self._index.setdefault(key.lower(), []).append(text)

    def get(self, name, default=None):
        """Return the first value of field ``name``, or ``default``."""
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name):
        """Return every value of field ``name`` (a list, empty when absent)."""
        return list(self._index.get(name.lower(), ()))

    def items(self):
        return list(self._items)


def parse_params(value):
    """Parse ``type/sub; a=1; b="x y"`` parameters into ``[(NAME, value), ...]`` (RFC 2045, RFC 2231)."""
    params = []
    continued = {}
    for match in _PARAM.finditer(value, value.find(";") if ";" in value else len(value)):
        name, raw = match.group(1).upper(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) > 1:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if "*" in name:
            # RFC 2231: NAME*=charset'lang'value and NAME*0, NAME*1... continuations.
            base, _, rest = name.partition("*")
            encoded = rest.endswith("*") or rest == ""
            if encoded and "'" in raw and not rest.rstrip("*"):
                charset, _, tail = raw.partition("'")
                raw = urllib.parse.unquote(tail.partition("'")[2], encoding=charset or "utf-8", errors="replace")
            elif encoded:
                raw = urllib.parse.unquote(raw.split("'", 2)[-1] if raw.count("'") >= 2 else raw)
            number = rest.rstrip("*")
            if number.isdigit():
                continued.setdefault(base, []).append((int(number), raw))
                continue
            name = base
        params.append((name, raw))
    for base, pieces in continued.items():
        params.append((base, "".join(piece for _, piece in sorted(pieces))))
    return params


def decode_words(value):
    """Decode RFC 2047 encoded words; undecodable text is kept as it is."""
    if "=?" not in value:
        return value
    try:
        pieces = email.header.decode_header(value)
    except (ValueError, email.errors.HeaderParseError):
        return value
    out = []
    for text, charset in pieces:
        if isinstance(text, bytes):
            try:
                text = text.decode(charset or "ascii", "replace")
            except LookupError:
                text = text.decode("utf-8", "replace")
        out.append(text)
    return "".join(out)


def _split_multipart(body, boundary):
    """Split a multipart body into the raw octets of its parts (RFC 2046 §5.1.1).

    A delimiter is ``--boundary`` at the start of a line, optionally followed
    by ``--`` (the close delimiter) and white space.  The CRLF before each
    delimiter belongs to the delimiter, not to the part before it.
    """
    dash = b"--" + boundary.encode("utf-8", "surrogateescape")
    parts = []
    start = None
    pos = 0
    while True:
        index = body.find(dash, pos)
        if index == -1:
            break
        pos = index + len(dash)
        if index > 0 and body[index - 1:index] != b"\n":
            continue
        eol = body.find(b"\n", pos)
        tail = body[pos:eol if eol != -1 else len(body)].rstrip(b"\r")
        closing = tail.startswith(b"--")
        if tail[2 if closing else 0:].strip(b" \t"):
            continue  # a longer boundary that merely starts with ours
        if start is not None:
            end = index
            if end >= 1 and body[end - 1:end] == b"\n":
                end -= 2 if end >= 2 and body[end - 2:end] == b"\r\n" else 1
            parts.append(body[start:max(start, end)])
        if closing or eol == -1:
            start = None
            break
        start = eol + 1
        pos = start
    if start is not None:  # no closing delimiter: the last part runs to the end
        parts.append(body[start:])
    return parts
