# -*- test-case-name: tests.imapd.test_fetch -*-
"""FETCH and UID FETCH (RFC 3501 §6.4.5, §7.4.2).

Attributes: FLAGS, UID, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY,
BODYSTRUCTURE, RFC822, RFC822.HEADER, RFC822.TEXT, BODY[section]<partial>
and BODY.PEEK[...], plus the ALL/FAST/FULL macros.  Sections are cut from
the original octets by :mod:`mailstack.imapd.mime`, so sizes always agree.
Fetching a body without ``.PEEK`` (and RFC822, RFC822.TEXT) sets ``\\Seen``
in a read-write mailbox, and the new FLAGS are returned with it.

Message contents are only read when an attribute needs them; a
``UID FETCH 1:* (FLAGS)`` touches nothing but the selected mailbox's
in-memory list.  Output is produced in batches so that a huge mailbox does
not hold the reactor for long.
"""

import functools
import time
from dataclasses import dataclass

from twisted.internet import defer

from mailstack.imapd import mime
from mailstack.imapd.errors import Bad
from mailstack.imapd.syntax import Raw, encode_item, encode_list, quote

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

MACROS = {
    b"ALL": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"],
    b"FAST": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"],
    b"FULL": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"],
}
_SIMPLE = {b"FLAGS", b"UID", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODYSTRUCTURE",
           b"RFC822", b"RFC822.HEADER", b"RFC822.TEXT", b"BODY"}
_NEEDS_CONTENT = {b"ENVELOPE", b"BODYSTRUCTURE", b"RFC822", b"RFC822.HEADER", b"RFC822.TEXT", b"BODY"}
_SETS_SEEN = {b"RFC822", b"RFC822.TEXT"}
_STRUCTURED = {b"ENVELOPE", b"BODYSTRUCTURE", b"BODY"}
_RAW = {b"RFC822", b"RFC822.HEADER", b"RFC822.TEXT"}
BATCH = 2000
CONTENT_BATCH = 500             # messages read per thread-pool call at most...
CONTENT_BYTES = 1024 * 1024     # ...or about this much content


@dataclass(frozen=True)
class Section:
    """A ``BODY[...]`` request.

    Attributes:
        peek: BODY.PEEK (does not set \\Seen).
        part: part numbers, e.g. ``(1, 2)``; empty for the whole message.
        text: ``""``, ``"HEADER"``, ``"HEADER.FIELDS"``, ``"HEADER.FIELDS.NOT"``, ``"TEXT"`` or ``"MIME"``.
        fields: header names for HEADER.FIELDS[.NOT].
        partial: ``(offset, length)`` or None.
        spec: the section text as the client wrote it, echoed in the response.
    """

    peek: bool
    part: tuple
    text: str
    fields: tuple
    partial: tuple
    spec: bytes


def parse_attributes(cursor):
    """Parse the FETCH attribute list; return a list of bytes names and :class:`Section` objects."""
    if cursor.skip(b"("):
        items = [_attribute(cursor)]
        while cursor.skip(b" "):
            items.append(_attribute(cursor))
        cursor.expect(b")")
    else:
        start = cursor.pos
        word = cursor.word().upper()
        if word in MACROS:
            return list(MACROS[word])
        cursor.pos = start
        items = [_attribute(cursor)]
    return items


def _attribute(cursor):
    word = cursor.word().upper()
    if word in (b"BODY", b"BODY.PEEK") and cursor.peek() == b"[":
        return _section(cursor, word == b"BODY.PEEK")
    if word == b"BINARY" or word not in _SIMPLE:
        raise Bad("Unknown FETCH attribute %s" % word.decode("ascii", "replace"))
    return word


def _section(cursor, peek):
    cursor.expect(b"[")
    start = cursor.pos
    numbers = []
    text = ""
    fields = ()
    while cursor.peek().isdigit():
        numbers.append(cursor.nz_number())
        if not cursor.skip(b"."):
            break
    if cursor.peek() != b"]":
        word = cursor.word().upper().decode("ascii")
        if word not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME") or \
                (word == "MIME" and not numbers):
            raise Bad("Invalid BODY[] section")
        text = word
        if word.startswith("HEADER.FIELDS"):
            cursor.sp()
            cursor.expect(b"(")
            names = [cursor.astring()]
            while cursor.skip(b" "):
                names.append(cursor.astring())
            cursor.expect(b")")
            fields = tuple(n.decode("ascii", "replace") for n in names)
    spec = cursor.data[start:cursor.pos]
    cursor.expect(b"]")
    partial = None
    if cursor.skip(b"<"):
        offset = cursor.number()
        cursor.expect(b".")
        length = cursor.nz_number()
        cursor.expect(b">")
        partial = (offset, length)
    return Section(peek, tuple(numbers), text, fields, partial, spec)


async def fetch(session, tag, cursor, uid):
    cursor.sp()
    ranges = cursor.seq_set()
    cursor.sp()
    items = parse_attributes(cursor)
    cursor.end()
    selected = session.selected
    if uid and b"UID" not in items:
        items.insert(0, b"UID")
    if set(items) <= {b"UID", b"FLAGS"}:
        # The common sync query (UID FETCH 1:* (FLAGS)): straight from the in-memory view.
        await _fetch_flags(session, selected, ranges, uid, b"UID" in items, b"FLAGS" in items)
        return b"Fetch completed."
    targets = selected.resolve(ranges, uid)
    need_content = any(isinstance(i, Section) or i in _NEEDS_CONTENT for i in items)
    sets_seen = selected.writable and any(
        (isinstance(i, Section) and not i.peek) or i in _SETS_SEEN for i in items)
    if sets_seen:
        unseen = [msg for _, msg in targets if "\\Seen" not in msg.flags]
        if unseen:
            updated = {m.uid: m for m in await selected.store(unseen, "+", ["\\Seen"])}
            targets = [(seq, updated.get(msg.uid, msg)) for seq, msg in targets]
    targets = [(seq, msg) for seq, msg in targets if not selected.is_gone(msg.uid)]
    if b"INTERNALDATE" in items:
        await selected.load_dates([msg for _, msg in targets])
    cache = getattr(session.factory, "structure_cache", None)
    cacheable = cache is not None and all(not isinstance(i, Section) and i not in _RAW for i in items)
    batches = list(_batches(targets, need_content))
    header_cache = getattr(session.factory, "header_cache", None)

    def load(batch):
        if not need_content:
            return defer.succeed(({}, {}))
        return defer.ensureDeferred(selected.run(_load, selected, batch, items, cache if cacheable else None,
                                                 header_cache))
    loading = load(batches[0]) if batches else None
    for number, batch in enumerate(batches, 1):
        contents, entries = await loading
        # The next batch is read while this one goes out and while pause()
        # waits for a slow client: the socket does not idle between batches.
        loading = load(batches[number]) if number < len(batches) else None
        chunks = []
        for seq, msg in batch:
            entry = entries.get(msg.uid)
            if need_content and entry is None and msg.uid not in contents:
                continue  # expunged by someone else meanwhile
            chunks.append(_response(seq, msg, items, contents.get(msg.uid), sets_seen, selected, entry))
        session.send_raw(b"".join(chunks))
        if number < len(batches):
            await session.pause()
    return b"Fetch completed."


def _batches(targets, need_content):
    """Split the targets into batches: :data:`BATCH` messages, or about :data:`CONTENT_BYTES` of content."""
    if not need_content:
        for start in range(0, len(targets), BATCH):
            yield targets[start:start + BATCH]
        return
    batch, size = [], 0
    for target in targets:
        batch.append(target)
        size += target[1].vsize
        if size >= CONTENT_BYTES or len(batch) >= CONTENT_BATCH:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _load(selected, batch, items, cache, headers=None):
    """Read a batch's contents and its structure items; return ``(contents, entries)``.  Blocks (thread pool).

    With a cache (the items are all cacheable), messages whose structures
    are cached are not read; the others are read once, and their
    ENVELOPE/BODYSTRUCTURE/BODY encoded here, off the reactor, and cached,
    with their header block in ``headers`` (the header SEARCH cache).
    """
    if cache is None:
        return selected.read_contents([msg for _, msg in batch]), {}
    path = selected.folder.path
    wanted = [i for i in items if i in _STRUCTURED]
    entries, missing = {}, []
    for _, msg in batch:
        entry = cache.get((path, msg.base))
        if entry is not None and all(i in entry for i in wanted):
            entries[msg.uid] = entry
        else:
            missing.append(msg)
    contents = selected.read_contents(missing)
    for msg in missing:
        content = contents.get(msg.uid)
        if content is not None:
            entry = entries[msg.uid] = _structures(items, content)
            cache.put((path, msg.base), entry)
            if headers is not None:
                # For later header SEARCHes (as Dovecot caches the fields
                # it has parsed): they then read no file.
                end = content.find(b"\r\n\r\n")
                headers.put((path, msg.base), {b"HEADER": content[:end + 4] if end != -1 else content})
    return contents, entries


async def _fetch_flags(session, selected, ranges, uid, with_uid, with_flags):
    messages = selected.messages
    gone = selected.is_gone if selected.has_gone() else None
    recent = selected.recent
    positions = selected.positions(ranges, uid)
    for start in range(0, len(positions), BATCH):
        lines = []
        for pos in positions[start:start + BATCH]:
            msg = messages[pos]
            if gone is not None and gone(msg.uid):
                continue
            if with_uid and with_flags:
                lines.append(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (
                    pos + 1, msg.uid, format_flags(msg.flags, msg.uid in recent)))
            elif with_uid:
                lines.append(b"* %d FETCH (UID %d)\r\n" % (pos + 1, msg.uid))
            else:
                lines.append(b"* %d FETCH (FLAGS %s)\r\n" % (pos + 1, format_flags(msg.flags, msg.uid in recent)))
        session.send_raw(b"".join(lines))


def _structures(items, content):
    """Encode the structure items (ENVELOPE, BODYSTRUCTURE, BODY) a FETCH asks for."""
    entity = mime.Entity(content)
    encoders = {
        b"ENVELOPE": lambda: encode_list(envelope(entity)),
        b"BODYSTRUCTURE": lambda: encode_list(body_structure(entity, True)),
        b"BODY": lambda: encode_list(body_structure(entity, False)),
    }
    return {item: encoders[item]() for item in items if item in _STRUCTURED}


def _response(seq, msg, items, content, seen_changed, selected, encoded=None):
    if encoded is None and _STRUCTURED.intersection(items):
        encoded = _structures(items, content)
    entity = _LazyEntity(content)
    out = []
    flags_sent = False
    for item in items:
        if isinstance(item, Section):
            out.append(_section_response(item, entity))
            continue
        if item == b"FLAGS":
            flags_sent = True
            out.append(b"FLAGS " + format_flags(msg.flags, msg.uid in selected.recent))
        elif item == b"UID":
            out.append(b"UID %d" % msg.uid)
        elif item == b"INTERNALDATE":
            out.append(b"INTERNALDATE " + quote(format_internal_date(selected.internal_date(msg))))
        elif item == b"RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % msg.vsize)
        elif item in _STRUCTURED:
            out.append(item + b" " + encoded[item])
        elif item == b"RFC822":
            out.append(b"RFC822 " + _literal(content))
        elif item == b"RFC822.HEADER":
            out.append(b"RFC822.HEADER " + _literal(entity.header))
        elif item == b"RFC822.TEXT":
            out.append(b"RFC822.TEXT " + _literal(entity.body))
    if seen_changed and not flags_sent:
        out.append(b"FLAGS " + format_flags(msg.flags, msg.uid in selected.recent))
    return b"* %d FETCH (" % seq + b" ".join(out) + b")\r\n"


class _LazyEntity:
    """Parses the message only when an attribute needs its structure (not for BODY[] or RFC822)."""

    __slots__ = ("content", "_entity")

    def __init__(self, content):
        self.content = content
        self._entity = None

    def __getattr__(self, name):
        if self._entity is None:
            self._entity = mime.Entity(self.content)
        return getattr(self._entity, name)


def _literal(data):
    return b"{%d}\r\n" % len(data) + data


def section_data(section, entity):
    """Return the octets a :class:`Section` names in ``entity``, or b"" when the part does not exist."""
    if not section.part and not section.text and isinstance(entity, _LazyEntity):
        return entity.content
    try:
        target = entity.part(section.part) if section.part else entity
    except LookupError:
        return b""
    if section.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT") and section.part:
        # RFC 3501 §6.4.5: these apply to the message inside a message/rfc822 part.
        if not target.is_message:
            return b""
        target = target.inner()
    if section.text == "":
        return target.data if not section.part else target.body
    if section.text == "MIME":
        return target.header
    if section.text == "HEADER":
        return target.header
    if section.text == "HEADER.FIELDS":
        return mime.filter_header(target.header, section.fields, False)
    if section.text == "HEADER.FIELDS.NOT":
        return mime.filter_header(target.header, section.fields, True)
    return target.body


def _section_response(section, entity):
    data = section_data(section, entity)
    name = b"BODY[" + section.spec + b"]"
    if section.partial is not None:
        offset, length = section.partial
        data = data[offset:offset + length]
        name += b"<%d>" % offset
    return name + b" " + _literal(data)


_FLAG_CACHE = {}


_RECENT = frozenset(("\\Recent",))


def format_flags(flags, recent=False):
    """Return ``(\\Seen $Label1)`` for a set of flag names (memoised: mailboxes reuse a few sets).

    ``recent`` adds ``\\Recent``, which the store never keeps (it is the
    session's, RFC 3501 §2.3.2).
    """
    if recent:
        flags = flags | _RECENT
    try:
        return _FLAG_CACHE[flags]
    except (KeyError, TypeError):
        pass
    text = b"(" + " ".join(sorted(flags)).encode("utf-8") + b")"
    if isinstance(flags, frozenset) and len(_FLAG_CACHE) < 4096:
        _FLAG_CACHE[flags] = text
    return text


def format_internal_date(stamp):
    """Return an RFC 3501 date-time (``"17-Jul-1996 02:44:25 -0700"``) for a POSIX time, in local time."""
    local = time.localtime(stamp)
    offset = local.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    return "%02d-%s-%04d %02d:%02d:%02d %s%02d%02d" % (
        local.tm_mday, _MONTHS[local.tm_mon - 1], local.tm_year, local.tm_hour, local.tm_min,
        local.tm_sec, sign, abs(offset) // 60, abs(offset) % 60)


# -- ENVELOPE and BODYSTRUCTURE (RFC 3501 §7.4.2) --------------------------------

@functools.lru_cache(maxsize=4096)
def _addresses(value):
    """Return an address list as encoded bytes (cached: mailboxes repeat their correspondents)."""
    if value is None:
        return None
    result = []
    for name, address in email_getaddresses(value):
        if not address and not name:
            continue
        local, at, domain = address.rpartition("@") if "@" in address else (address, "", "")
        result.append([name or None, None, local or None, domain or None])
    if not result:
        return None
    # RFC 3501 §9: env-from = "(" 1*address ")": addresses follow each other without spaces.
    return Raw(b"(" + b"".join(encode_list(address) for address in result) + b")")


def email_getaddresses(value):
    import email.utils
    return email.utils.getaddresses([value])


def envelope(entity):
    """Return the ENVELOPE structure of ``entity`` as nested Python lists."""
    field = entity.field
    sender_from = _addresses(field("from"))
    return [
        field("date"), field("subject"), sender_from,
        _addresses(field("sender")) or sender_from,
        _addresses(field("reply-to")) or sender_from,
        _addresses(field("to")), _addresses(field("cc")), _addresses(field("bcc")),
        field("in-reply-to"), field("message-id"),
    ]


def _params(entity):
    params = []
    for name, value in entity.params():
        params += [name, value]
    return params or None


def _disposition(entity):
    value = entity.fields.get("content-disposition")
    if value is None:
        return None
    kind = value.split(";")[0].strip().upper()
    params = []
    for name, pvalue in entity.params("content-disposition"):
        params += [name, pvalue]
    return [kind, params or None]


def _language(entity):
    value = entity.field("content-language")
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def body_structure(entity, extended):
    """Return BODY (``extended=False``) or BODYSTRUCTURE of ``entity`` as nested lists."""
    main, sub = entity.content_type
    if entity.is_multipart:
        result = [body_structure(part, extended) for part in entity.parts()]
        if not result:
            result = [["TEXT", "PLAIN", ["CHARSET", "us-ascii"], None, None, "7BIT", 0, 0]]
        result = [Raw(b"".join(encode_item(r) for r in result)), sub.upper()]
        if extended:
            result += [_params(entity), _disposition(entity), _language(entity), entity.field("content-location")]
        return result
    encoding = (entity.field("content-transfer-encoding") or "7BIT").upper()
    result = [main.upper(), sub.upper(), _params(entity), entity.field("content-id"),
              entity.field("content-description"), encoding, len(entity.body)]
    if entity.is_message:
        inner = entity.inner()
        result += [envelope(inner), body_structure(inner, extended), mime.lines_of(entity.body)]
    elif main == "text":
        result.append(mime.lines_of(entity.body))
    if extended:
        result += [entity.field("content-md5"), _disposition(entity), _language(entity),
                   entity.field("content-location")]
    return result

