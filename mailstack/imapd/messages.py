# -*- test-case-name: tests.imapd.test_messages -*-
"""Changing messages: APPEND, STORE, COPY, MOVE, EXPUNGE and UID EXPUNGE.

RFC 3501 §6.3.11, §6.4.3, §6.4.6-7; UIDPLUS (RFC 4315: APPENDUID,
COPYUID, UID EXPUNGE); MOVE (RFC 6851).  Flags and keywords go to the store,
which keeps them in the file names and its keyword list, so they persist
across sessions and restarts; UIDs come from the store's uidlist.
"""

import calendar
import re

from mailstack.imapd.errors import Bad, No
from mailstack.imapd.fetch import format_flags
from mailstack.imapd.mailboxes import mailbox_name, store_call
from mailstack.imapd.selected import SYSTEM_FLAGS
from mailstack.store.errors import FolderNotFound
from mailstack.store.keywords import KeywordLimitError

_DATE_TIME = re.compile(
    rb"^([ 0-9]?[0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})$")
_MONTHS = {m: i for i, m in enumerate(
    (b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC"), 1)}


def parse_date_time(raw):
    """Parse an RFC 3501 ``date-time`` into POSIX seconds.

    Raises:
        Bad: on a malformed value.
    """
    match = _DATE_TIME.match(raw)
    if not match or match.group(2).upper() not in _MONTHS:
        raise Bad("Invalid date-time")
    day, _, year, hour, minute, second, sign, zh, zm = match.groups()
    try:
        stamp = calendar.timegm((int(year), _MONTHS[match.group(2).upper()], int(day), int(hour),
                                 int(minute), int(second), 0, 0, 0))
    except (ValueError, OverflowError):
        raise Bad("Invalid date-time") from None
    offset = (int(zh) * 60 + int(zm)) * 60
    return stamp - offset if sign == b"+" else stamp + offset


def check_flags(flags):
    """Validate client flags: known system flags and keyword atoms; ``\\Recent`` is dropped.

    Raises:
        Bad: for an unknown system flag.
    """
    result = []
    for flag in flags:
        if flag.startswith("\\"):
            canonical = "\\" + flag[1:].capitalize()
            if canonical == "\\Recent":
                continue
            if canonical not in SYSTEM_FLAGS:
                raise Bad("Invalid system flag %s" % flag)
            flag = canonical
        result.append(flag)
    return result


def uid_set(uids):
    """Format UIDs compactly as an IMAP set (``1:3,7``), in the order given."""
    out = []
    start = prev = None
    for uid in uids:
        if prev is not None and uid == prev + 1:
            prev = uid
            continue
        if start is not None:
            out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
        start = prev = uid
    if start is not None:
        out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
    return b",".join(out)


async def append(session, tag, cursor, uid):
    cursor.sp()
    name = mailbox_name(cursor.astring())
    cursor.sp()
    flags = []
    if cursor.peek() == b"(":
        flags = check_flags(cursor.flag_list())
        cursor.sp()
    internal_date = None
    if cursor.peek() == b'"':
        internal_date = parse_date_time(cursor.quoted())
        cursor.sp()
    data = cursor.literal()
    cursor.end()
    if not data:
        raise No("Can't save a zero byte message.")
    folder = session.account.folder(name)

    def save():
        if not folder.exists():
            raise FolderNotFound("folder %s does not exist" % name)
        return folder.append(data, flags, internaldate=internal_date), folder.uidvalidity

    try:
        message, uidvalidity = await store_call(session, save)
    except No as err:
        if err.code == "NONEXISTENT":
            raise No("Mailbox doesn't exist: %s" % name, "TRYCREATE") from None
        raise
    except KeywordLimitError as err:
        raise No(str(err), "LIMIT") from None
    return b"[APPENDUID %d %d] Append completed." % (uidvalidity, message.uid)


_STORE_ITEMS = {b"FLAGS": "", b"+FLAGS": "+", b"-FLAGS": "-"}


async def store(session, tag, cursor, uid):
    cursor.sp()
    ranges = cursor.seq_set()
    cursor.sp()
    item = cursor.atom().upper()
    silent = item.endswith(b".SILENT")
    mode = _STORE_ITEMS.get(item[:-7] if silent else item)
    if mode is None:
        raise Bad("Invalid STORE item %s" % item.decode("ascii", "replace"))
    cursor.sp()
    flags = check_flags(cursor.flag_list(allow_bare=True))
    cursor.end()
    selected = session.selected
    if not selected.writable:
        raise No("Mailbox is read-only.", "READ-ONLY")
    targets = [(seq, msg) for seq, msg in selected.resolve(ranges, uid) if not selected.is_gone(msg.uid)]
    if not targets:
        return b"Store completed."
    try:
        updated = await selected.store([msg for _, msg in targets], mode, flags)
    except KeywordLimitError as err:
        raise No(str(err), "LIMIT") from None
    if not silent:
        for (seq, _), message in zip(targets, updated):
            uid_part = b"UID %d " % message.uid if uid else b""
            session.untagged(b"%d FETCH (%sFLAGS %s)" % (seq, uid_part, format_flags(message.flags, message.uid in selected.recent)))
    return b"Store completed."


async def _copy(session, cursor, uid):
    cursor.sp()
    ranges = cursor.seq_set()
    cursor.sp()
    name = mailbox_name(cursor.astring())
    cursor.end()
    selected = session.selected
    targets = [msg for _, msg in selected.resolve(ranges, uid) if not selected.is_gone(msg.uid)]
    target = session.account.folder(name)
    source = selected.folder

    def copy():
        if not target.exists():
            raise FolderNotFound("folder %s does not exist" % name)
        target.sync()
        pairs = source.copy_to([m.uid for m in targets], target)
        return pairs, target.uidvalidity

    try:
        pairs, uidvalidity = await store_call(session, copy)
    except No as err:
        if err.code == "NONEXISTENT":
            raise No("Mailbox doesn't exist: %s" % name, "TRYCREATE") from None
        raise
    if not pairs:
        return None, [], []
    code = b"COPYUID %d %s %s" % (uidvalidity, uid_set([old for old, _ in pairs]),
                                  uid_set([new.uid for _, new in pairs]))
    return code, [old for old, _ in pairs], targets


async def copy(session, tag, cursor, uid):
    code, _, _ = await _copy(session, cursor, uid)
    return (b"[" + code + b"] Copy completed.") if code else b"Copy completed."


async def move(session, tag, cursor, uid):
    selected = session.selected
    if not selected.writable:
        raise No("Mailbox is read-only.", "READ-ONLY")
    code, moved, _ = await _copy(session, cursor, uid)
    if code:
        # RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
        session.untagged(b"OK [" + code + b"] Moved UIDs.")
        await _expunge(session, moved)
    return b"Move completed."


async def expunge(session, tag, cursor, uid):
    ranges = None
    if uid:
        cursor.sp()
        ranges = cursor.seq_set()
    cursor.end()
    selected = session.selected
    if not selected.writable:
        raise No("Mailbox is read-only.", "READ-ONLY")
    if ranges is not None:
        candidates = [msg for _, msg in selected.resolve(ranges, True)]
    else:
        candidates = selected.messages
    uids = [m.uid for m in candidates if "\\Deleted" in m.flags]
    await _expunge(session, uids)
    return b"Expunge completed."


async def _expunge(session, uids):
    if not uids:
        return
    selected = session.selected
    removed = await store_call(session, selected.folder.expunge, uids)
    # Messages someone else removed first are gone as well: report them too.
    gone = set(removed) | {u for u in uids if selected.folder.get(u) is None}
    for seq in selected.forget(gone):
        session.untagged(b"%d EXPUNGE" % seq)
