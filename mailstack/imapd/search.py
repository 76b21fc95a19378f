# -*- test-case-name: tests.imapd.test_search -*-
"""SEARCH and UID SEARCH (RFC 3501 §6.4.4).

The search program is parsed once into a tree of small predicate functions
``(ctx) -> bool``; each key is one entry of :data:`KEYS` (no if/else chain).
Keys that look at headers or bodies make the search read message contents,
others run on the selected mailbox's in-memory list only.  String matches
are case-insensitive substring matches on RFC 2047-decoded headers and on
decoded text parts (Dovecot does the same); dates compare calendar days in
the server's time zone (RFC 3501: "disregarding time and timezone").
"""

import datetime
import email.utils
import re

from twisted.internet import defer

from mailstack.imapd import mime
from mailstack.imapd.errors import Bad, No

CHARSETS = ("UTF-8", "US-ASCII")
CONTENT_BATCH = 500     # messages read and tested per thread-pool call
SCANS_IN_FLIGHT = 2     # thread-pool calls of one SEARCH running at once
_FOLD = re.compile(rb"\r?\n[ \t]")   # as mime.Headers unfolds, on bytes


class Context:
    """What a predicate looks at: one message, its number, and its content when needed.

    ``raw`` is the message (or header block) as read; ``entity`` parses it
    on first use, so that a key whose quick test on ``raw`` already says
    "no" costs no MIME parse.
    """

    __slots__ = ("seq", "msg", "raw", "_entity", "_folded", "last_seq", "last_uid", "recent", "selected")

    def __init__(self, seq, msg, raw, last_seq, last_uid, recent, selected):
        self.selected = selected
        self.seq = seq
        self.msg = msg
        self.raw = raw
        self._entity = None
        self._folded = None
        self.last_seq = last_seq
        self.last_uid = last_uid
        self.recent = recent

    @property
    def entity(self):
        if self._entity is None:
            self._entity = mime.Entity(self.raw if self.raw is not None else b"\r\n")
        return self._entity

    def plain_header(self):
        """Return the header block unfolded and lower-cased when it is plain ASCII without encoded words, else None.

        For such a header every decoded field value (what header keys
        compare) is a substring of this text, so a needle absent from it
        matches no field.
        """
        if self._folded is None:
            raw = self.raw or b""
            end = raw.find(b"\r\n\r\n")
            head = raw if end == -1 else raw[:end + 2]
            if b"=?" in head or not head.isascii():
                self._folded = False
            else:
                if b"\n " in head or b"\n\t" in head:
                    head = _FOLD.sub(b" ", head)
                self._folded = head.lower()
        return self._folded or None


class Program:
    """A parsed search: ``test(ctx)`` and whether contents are needed."""

    def __init__(self):
        self.needs_content = False
        self.needs_body = False
        self.needs_dates = False
        self.charset = "utf-8"


def _flag(name, present=True):
    return lambda prog, cur: (lambda ctx: (name in ctx.msg.flags) == present)


def _string(cur, prog):
    cur.sp()
    return cur.astring().decode(prog.charset, "replace").lower()


def _header_match(name, needle):
    """Return the test for "field ``name`` contains ``needle``" with a quick no on the raw header."""
    quick = needle.encode("ascii") if needle.isascii() else None

    def test(ctx):
        if quick is not None:
            plain = ctx.plain_header()
            if plain is not None and quick not in plain:
                return False
        return needle in ctx.entity.decoded_header(name).lower()
    return test


def _header_key(header):
    def build(prog, cur):
        needle = _string(cur, prog)
        prog.needs_content = True
        return _header_match(header, needle)
    return build


def _header(prog, cur):
    cur.sp()
    name = cur.astring().decode("ascii", "replace")
    needle = _string(cur, prog)
    prog.needs_content = True
    if not needle:
        return lambda ctx: ctx.entity.fields.get(name) is not None
    return _header_match(name, needle)


def _body(prog, cur):
    needle = _string(cur, prog)
    prog.needs_content = prog.needs_body = True
    return lambda ctx: needle in ctx.entity.body_text().lower()


def _text(prog, cur):
    needle = _string(cur, prog)
    prog.needs_content = prog.needs_body = True
    return lambda ctx: (needle in ctx.entity.all_headers_text().lower()
                        or needle in ctx.entity.body_text().lower())


def _keyword(present):
    def build(prog, cur):
        cur.sp()
        name = cur.flag()
        return lambda ctx: (name in ctx.msg.flags) == present
    return build


def _size(larger):
    def build(prog, cur):
        cur.sp()
        limit = cur.number()
        return (lambda ctx: ctx.msg.vsize > limit) if larger else (lambda ctx: ctx.msg.vsize < limit)
    return build


def _internal_day(stamp):
    return datetime.date.fromtimestamp(stamp)


def _sent_day(entity):
    value = entity.field("date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError):
        return None
    if not parsed:
        return None
    try:
        # RFC 5032 §3 compares the sent date in the message's own time zone.
        return datetime.date(parsed[0], parsed[1], parsed[2])
    except ValueError:
        return None


_COMPARE = {
    "BEFORE": lambda day, ref: day < ref,
    "ON": lambda day, ref: day == ref,
    "SINCE": lambda day, ref: day >= ref,
}


def _date(kind, sent):
    compare = _COMPARE[kind]

    def build(prog, cur):
        cur.sp()
        ref = cur.date()
        if sent:
            prog.needs_content = True
            prog.needs_dates = True

            def test(ctx):
                day = _sent_day(ctx.entity)
                # A message without a usable Date: falls back to its internal date.
                return compare(day if day is not None else _internal_day(ctx.selected.internal_date(ctx.msg)), ref)
            return test
        prog.needs_dates = True
        return lambda ctx: compare(_internal_day(ctx.selected.internal_date(ctx.msg)), ref)
    return build


def _not(prog, cur):
    cur.sp()
    inner = _key(prog, cur)
    return lambda ctx: not inner(ctx)


def _or(prog, cur):
    cur.sp()
    left = _key(prog, cur)
    cur.sp()
    right = _key(prog, cur)
    return lambda ctx: left(ctx) or right(ctx)


def _uid(prog, cur):
    cur.sp()
    ranges = cur.seq_set()
    return lambda ctx: _in_set(ranges, ctx.msg.uid, ctx.last_uid)


def _in_set(ranges, number, largest):
    for low, high in ranges:
        low = largest if low is None else low
        high = largest if high is None else high
        if low > high:
            low, high = high, low
        if low <= number <= high:
            return True
    return False


KEYS = {
    b"ALL": lambda prog, cur: (lambda ctx: True),
    b"ANSWERED": _flag("\\Answered"),
    b"DELETED": _flag("\\Deleted"),
    b"DRAFT": _flag("\\Draft"),
    b"FLAGGED": _flag("\\Flagged"),
    b"SEEN": _flag("\\Seen"),
    b"UNANSWERED": _flag("\\Answered", False),
    b"UNDELETED": _flag("\\Deleted", False),
    b"UNDRAFT": _flag("\\Draft", False),
    b"UNFLAGGED": _flag("\\Flagged", False),
    b"UNSEEN": _flag("\\Seen", False),
    b"RECENT": lambda prog, cur: (lambda ctx: ctx.msg.uid in ctx.recent),
    b"NEW": lambda prog, cur: (lambda ctx: ctx.msg.uid in ctx.recent and "\\Seen" not in ctx.msg.flags),
    b"OLD": lambda prog, cur: (lambda ctx: ctx.msg.uid not in ctx.recent),
    b"KEYWORD": _keyword(True),
    b"UNKEYWORD": _keyword(False),
    b"BCC": _header_key("bcc"),
    b"CC": _header_key("cc"),
    b"FROM": _header_key("from"),
    b"TO": _header_key("to"),
    b"SUBJECT": _header_key("subject"),
    b"HEADER": _header,
    b"BODY": _body,
    b"TEXT": _text,
    b"LARGER": _size(True),
    b"SMALLER": _size(False),
    b"BEFORE": _date("BEFORE", False),
    b"ON": _date("ON", False),
    b"SINCE": _date("SINCE", False),
    b"SENTBEFORE": _date("BEFORE", True),
    b"SENTON": _date("ON", True),
    b"SENTSINCE": _date("SINCE", True),
    b"NOT": _not,
    b"OR": _or,
    b"UID": _uid,
}


def _key(prog, cur):
    first = cur.peek()
    if first == b"(":
        cur.skip(b"(")
        tests = [_key(prog, cur)]
        while cur.skip(b" "):
            tests.append(_key(prog, cur))
        cur.expect(b")")
        return lambda ctx: all(t(ctx) for t in tests)
    if first.isdigit() or first == b"*":
        ranges = cur.seq_set()
        return lambda ctx: _in_set(ranges, ctx.seq, ctx.last_seq)
    word = cur.atom().upper()
    builder = KEYS.get(word)
    if builder is None:
        raise Bad("Unknown search key %s" % word.decode("ascii", "replace"))
    return builder(prog, cur)


def parse(cursor):
    """Parse ``[CHARSET name] key *(SP key)`` into a :class:`Program` with a ``test`` attribute.

    Raises:
        Bad: on a syntax error or an unknown key.
        No: ``[BADCHARSET]`` for a charset we cannot search in.
    """
    prog = Program()
    cursor.sp()
    if cursor.skip(b"CHARSET "):
        charset = cursor.astring().decode("ascii", "replace").upper()
        if charset not in CHARSETS:
            raise No("Unsupported charset", "BADCHARSET (%s)" % " ".join(CHARSETS))
        cursor.sp()
    tests = [_key(prog, cursor)]
    while cursor.skip(b" "):
        tests.append(_key(prog, cursor))
    cursor.end()
    prog.test = tests[0] if len(tests) == 1 else (lambda ctx: all(t(ctx) for t in tests))
    return prog


async def search(session, tag, cursor, uid):
    prog = parse(cursor)
    selected = session.selected
    messages = list(selected.messages)
    last_seq = len(messages)
    last_uid = messages[-1].uid if messages else 0
    recent = selected.recent
    hits = []
    if prog.needs_dates:
        await selected.load_dates(messages)
    if not prog.needs_content:
        for index, msg in enumerate(messages, 1):
            if prog.test(Context(index, msg, None, last_seq, last_uid, recent, selected)):
                hits.append(msg.uid if uid else index)
    else:
        # Reading and matching run in the store's thread pool, a batch at a
        # time, so the reactor serves other sessions between batches.
        cache = getattr(session.factory, "header_cache", None)

        def scan(start, batch):
            contents = selected.read_contents(batch) if prog.needs_body else selected.read_headers(batch, cache)
            found = []
            for index, msg in enumerate(batch, start + 1):
                if prog.test(Context(index, msg, contents.get(msg.uid), last_seq, last_uid, recent, selected)):
                    found.append(msg.uid if uid else index)
            return found

        # Two batches in flight: file opens and reads release the GIL, so
        # a second thread overlaps its I/O with the first one's matching.
        starts = list(range(0, len(messages), CONTENT_BATCH))
        for first in range(0, len(starts), SCANS_IN_FLIGHT):
            pending = [selected.run(scan, start, messages[start:start + CONTENT_BATCH])
                       for start in starts[first:first + SCANS_IN_FLIGHT]]
            try:
                batches = await defer.gatherResults(pending, consumeErrors=True)
            except defer.FirstError as err:
                err.subFailure.raiseException()
            for found in batches:
                hits += found
    session.untagged(b" ".join([b"SEARCH"] + [b"%d" % n for n in hits]))
    return b"Search completed."
