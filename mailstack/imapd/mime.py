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
import email.parser
import email.utils
import quopri
import re

_PARSER = email.parser.BytesHeaderParser()
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
        self.fields = _PARSER.parsebytes(self.header)
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
        ctype = self.fields.get_content_type()  # "text/plain" when malformed
        if value and "/" not in str(value).split(";")[0]:
            return ("text", "plain")
        main, _, sub = ctype.partition("/")
        return main, sub

    @property
    def is_multipart(self):
        return self.content_type[0] == "multipart" and bool(self.fields.get_boundary())

    @property
    def is_message(self):
        return self.content_type == ("message", "rfc822")

    def params(self):
        """Return the Content-Type parameters as ``[(name, value), ...]`` (names upper-cased)."""
        if self.fields.get("content-type") is None:
            return [("CHARSET", "us-ascii")] if self.content_type == ("text", "plain") else []
        result = []
        for name, value in self.fields.get_params(header="content-type")[1:]:
            if isinstance(value, tuple):
                value = email.utils.collapse_rfc2231_value(value)
            result.append((name.upper(), value))
        return result

    def field(self, name):
        """Return the raw (unfolded, undecoded) value of header ``name``, or None."""
        value = self.fields.get(name)
        if value is None:
            return None
        if isinstance(value, email.header.Header):
            value = str(value)
        return re.sub(r"\r?\n[ \t]", " ", value).strip() if isinstance(value, str) else value

    # -- structure --------------------------------------------------------------

    def parts(self):
        """Return the child entities of a multipart (empty for other types)."""
        if self._parts is None:
            self._parts = []
            if self.is_multipart:
                default = ("message", "rfc822") if self.content_type[1] == "digest" else ("text", "plain")
                self._parts = [Entity(raw, default) for raw in _split_multipart(self.body, self.fields.get_boundary())]
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
        values = self.fields.get_all(name) or []
        return "\n".join(decode_words(str(v)) for v in values)

    def all_headers_text(self):
        """Return the whole header, decoded, for TEXT searches."""
        return "\n".join("%s: %s" % (k, decode_words(str(v))) for k, v in self.fields.items())

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


def decode_words(value):
    """Decode RFC 2047 encoded words; undecodable text is kept as it is."""
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

    The CRLF before each boundary delimiter belongs to the delimiter, not to
    the part before it.
    """
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary.encode("utf-8", "replace")) +
                           rb"(--)?[ \t]*(?=\r?\n|$)")
    parts = []
    start = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start:match.start()])
        if match.group(1):
            start = None
            break
        nl = body.find(b"\n", match.end())
        if nl == -1:
            start = None
            break
        start = nl + 1
    if start is not None:  # no closing delimiter: the last part runs to the end
        parts.append(body[start:])
    return parts
