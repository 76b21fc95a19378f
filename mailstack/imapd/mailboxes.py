# -*- test-case-name: tests.imapd.test_mailboxes -*-
"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS, NAMESPACE.

RFC 3501 §6.3, with CHILDREN (RFC 3348), SPECIAL-USE (RFC 6154),
LIST-EXTENDED selection and return options (RFC 5258) and NAMESPACE
(RFC 2342).  The hierarchy separator is the store's ``.``; there is one
personal namespace with an empty prefix.

Mailbox names arrive in modified UTF-7 (RFC 3501 §5.1.3) and are checked by
:func:`mailbox_name` before the store sees them: a name that is not valid
mUTF-7, holds a control character (NUL included), a ``/``, ``~`` or ``..``
component, an empty level, or is longer than :data:`MAX_NAME_LENGTH` octets
is refused with ``NO``, so no name can reach outside the user's maildir.

``RENAME INBOX new`` follows RFC 3501 §6.3.5: INBOX's messages move to the
new mailbox and INBOX stays, empty.
"""

import re

from mailstack.imapd.errors import Bad, No
from mailstack.imapd.syntax import astring as encode_astring
from mailstack.store import mutf7
from mailstack.store.errors import BadFolderName, FolderExists, FolderNotFound, QuotaExceeded, StoreError

SEPARATOR = "."
MAX_NAME_LENGTH = 255
# RFC 6154 attributes of the folders the store creates for every user.
SPECIAL_USE = {"Drafts": "\\Drafts", "Sent": "\\Sent", "Trash": "\\Trash", "Junk": "\\Junk",
               "Archive": "\\Archive"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def mailbox_name(raw):
    """Return the Unicode name of a mailbox name sent by a client, normalised (``INBOX``).

    Raises:
        No: for a name that must not reach the store (see the module docstring).
    """
    if len(raw) > MAX_NAME_LENGTH:
        raise No("Mailbox name too long", "CANNOT")
    try:
        name = mutf7.decode(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise No("Mailbox name is not valid mUTF-7", "CANNOT") from None
    if _CONTROL.search(name):
        raise No("Mailbox name contains control characters", "CANNOT")
    if "/" in name or "\\" in name or name.startswith("~"):
        raise No("Mailbox name contains a forbidden character", "CANNOT")
    if name.upper() == "INBOX":
        return "INBOX"
    parts = name.split(SEPARATOR)
    if any(part in ("", "..") for part in parts):
        raise No("Mailbox name has an empty level or '..'", "CANNOT")
    if parts[0].upper() == "INBOX":
        raise No("Mailboxes below INBOX are not supported", "CANNOT")
    return name


def encode_name(name):
    """Return ``name`` as the client sees it (modified UTF-7, quoted when needed)."""
    return encode_astring(mutf7.encode(name).encode("ascii"))


async def store_call(session, function, *args):
    """Run a blocking store call in the thread pool, turning store errors into ``NO`` replies."""
    try:
        return await session.factory.store.run(function, *args)
    except FolderNotFound:
        raise No("Mailbox doesn't exist.", "NONEXISTENT") from None
    except FolderExists:
        raise No("Mailbox already exists.", "ALREADYEXISTS") from None
    except BadFolderName as err:
        raise No(err.text, "CANNOT") from None
    except QuotaExceeded:
        raise No("Quota exceeded (mailbox for user is full)", "OVERQUOTA") from None
    except StoreError as err:
        raise No(err.text, "UNAVAILABLE" if err.temporary else "CANNOT") from None


def _arg_name(cursor, final=True):
    cursor.sp()
    raw = cursor.astring()
    if final:
        cursor.end()
    return mailbox_name(raw.rstrip(SEPARATOR.encode()) or raw)


async def create(session, tag, cursor, uid):
    name = _arg_name(cursor)
    if name == "INBOX":
        raise No("Mailbox already exists.", "ALREADYEXISTS")
    await store_call(session, session.account.create_folder, name)
    return b"Create completed."


async def delete(session, tag, cursor, uid):
    name = _arg_name(cursor)
    if name == "INBOX":
        raise No("INBOX can't be deleted.", "CANNOT")
    selected = session.selected
    if selected is not None and selected.name == name:
        session.deselect()
        session.untagged(b"OK [CLOSED] Mailbox deleted")
    await store_call(session, session.account.delete_folder, name)
    return b"Delete completed."


async def rename(session, tag, cursor, uid):
    cursor.sp()
    old = mailbox_name(cursor.astring())
    new = _arg_name(cursor)
    if new == "INBOX":
        raise No("Mailbox already exists.", "ALREADYEXISTS")
    account = session.account
    if old != "INBOX":
        await store_call(session, account.rename_folder, old, new)
        return b"Rename completed."

    def move_inbox():
        # RFC 3501 §6.3.5: INBOX's messages go to the new mailbox; INBOX stays, empty.
        target = account.create_folder(new)
        inbox = account.folder("INBOX")
        inbox.sync()
        uids = [m.uid for m in inbox.messages()]
        inbox.copy_to(uids, target)
        inbox.expunge(uids)

    await store_call(session, move_inbox)
    return b"Rename completed."


async def subscribe(session, tag, cursor, uid):
    name = _arg_name(cursor)
    await store_call(session, session.account.subscribe, name)
    return b"Subscribe completed."


async def unsubscribe(session, tag, cursor, uid):
    name = _arg_name(cursor)
    await store_call(session, session.account.unsubscribe, name)
    return b"Unsubscribe completed."


async def namespace(session, tag, cursor, uid):
    cursor.end()
    session.untagged(b'NAMESPACE (("" ".")) NIL NIL')
    return b"Namespace completed."


# -- LIST and LSUB ------------------------------------------------------------------

def pattern_regexp(pattern):
    """Compile a LIST pattern: ``*`` matches anything, ``%`` anything but the separator.

    INBOX matches case-insensitively (RFC 3501 §5.1).
    """
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*")
        elif char == "%":
            out.append("[^%s]*" % re.escape(SEPARATOR))
        else:
            out.append(re.escape(char))
    body = "".join(out)
    if pattern[:5].upper() == "INBOX":
        return re.compile("(?:(?i:INBOX)%s)$" % "".join(out[5:]), re.S)
    return re.compile(body + "$", re.S)


def _with_parents(names):
    """Return ``{name: exists}`` for names and the parents they imply."""
    result = {name: True for name in names}
    for name in names:
        parts = name.split(SEPARATOR)
        for i in range(1, len(parts)):
            result.setdefault(SEPARATOR.join(parts[:i]), False)
    return result


def _children(all_names):
    parents = set()
    for name in all_names:
        if SEPARATOR in name:
            parents.add(name.rsplit(SEPARATOR, 1)[0])
    return parents


def _list_patterns(cursor):
    if cursor.skip(b"("):
        patterns = [cursor.list_mailbox()]
        while cursor.skip(b" "):
            patterns.append(cursor.list_mailbox())
        cursor.expect(b")")
        return patterns
    return [cursor.list_mailbox()]


def _options(cursor):
    words = []
    cursor.expect(b"(")
    while not cursor.skip(b")"):
        if words:
            cursor.sp()
        words.append(cursor.atom().upper())
    return words


async def list_(session, tag, cursor, uid):
    cursor.sp()
    selection = []
    if cursor.peek() == b"(":
        selection = _options(cursor)
        cursor.sp()
        for word in selection:
            if word not in (b"SUBSCRIBED", b"REMOTE", b"RECURSIVEMATCH", b"SPECIAL-USE"):
                raise Bad("Unknown LIST selection option")
        if selection == [b"RECURSIVEMATCH"]:
            raise Bad("RECURSIVEMATCH needs another selection option")
    reference = cursor.astring()
    cursor.sp()
    patterns = _list_patterns(cursor)
    returns = []
    if cursor.skip(b" RETURN "):
        returns = _options(cursor)
    cursor.end()
    if patterns == [b""]:
        # RFC 3501 §6.3.8: an empty pattern asks for the delimiter and root.
        session.untagged(b'LIST (\\Noselect) "." ""')
        return b"List completed."
    await _list(session, reference, patterns, "LIST", selection, returns)
    return b"List completed."


async def lsub(session, tag, cursor, uid):
    cursor.sp()
    reference = cursor.astring()
    cursor.sp()
    pattern = cursor.list_mailbox()
    cursor.end()
    await _list(session, reference, [pattern], "LSUB", [b"SUBSCRIBED"], [])
    return b"Lsub completed."


async def _list(session, reference, patterns, command, selection, returns):
    account = session.account

    def gather():
        return account.list_folders(), set(account.subscriptions())

    names, subscribed = await store_call(session, gather)
    try:
        reference = mutf7.decode(reference.decode("ascii"))
        patterns = [mutf7.decode(p.decode("ascii")) for p in patterns]
    except (UnicodeDecodeError, ValueError):
        raise Bad("Mailbox pattern is not valid mUTF-7") from None
    regexps = [pattern_regexp(reference + pattern) for pattern in patterns]
    existing = set(names)
    if b"SUBSCRIBED" in selection:
        candidates = _with_parents(sorted(subscribed))
    else:
        candidates = _with_parents(names)
    parents = _children(existing)
    sub_parents = _children(subscribed)
    want_subscribed = b"SUBSCRIBED" in returns or (command == "LIST" and b"SUBSCRIBED" in selection)
    special_only = b"SPECIAL-USE" in selection
    lines = []
    for name in sorted(candidates, key=lambda n: (n != "INBOX", n)):
        if not any(r.match(name) for r in regexps):
            continue
        attributes = []
        if command == "LSUB":
            if name not in subscribed:
                attributes.append("\\Noselect")
        else:
            if name not in existing:
                attributes.append("\\NonExistent" if b"SUBSCRIBED" in selection else "\\Noselect")
            if b"SUBSCRIBED" in selection and name not in subscribed:
                if name not in sub_parents:
                    continue
            if name in parents:
                attributes.append("\\HasChildren")
            elif name in existing:
                attributes.append("\\HasNoChildren")
            if want_subscribed and name in subscribed:
                attributes.append("\\Subscribed")
            special = SPECIAL_USE.get(name)
            if special and name in existing:
                attributes.append(special)
            elif special_only:
                continue
            if b"SUBSCRIBED" in selection and b"RECURSIVEMATCH" in selection and name not in subscribed:
                lines.append(b"%s (%s) \".\" %s (\"CHILDINFO\" (\"SUBSCRIBED\"))" % (
                    command.encode(), " ".join(attributes).encode(), encode_name(name)))
                continue
        lines.append(b"%s (%s) \".\" %s" % (command.encode(), " ".join(attributes).encode(), encode_name(name)))
    for line in lines:
        session.untagged(line)


# -- STATUS -------------------------------------------------------------------------

_STATUS_ITEMS = (b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN")


async def status(session, tag, cursor, uid):
    cursor.sp()
    raw = cursor.astring()
    name = mailbox_name(raw)
    cursor.sp()
    items = _options(cursor)
    cursor.end()
    if not items:
        raise Bad("Missing STATUS items")
    for item in items:
        if item not in _STATUS_ITEMS:
            raise Bad("Unknown STATUS item %s" % item.decode("ascii", "replace"))
    values = await status_values(session, name)
    body = b" ".join(b"%s %d" % (item, values[item]) for item in items)
    session.untagged(b"STATUS " + encode_name(name) + b" (" + body + b")")
    return b"Status completed."


async def status_values(session, name):
    """Return ``{item: number}`` for every STATUS item of mailbox ``name``."""
    folder = session.account.folder(name)

    selected = session.selected
    mine = selected is not None and selected.folder is folder

    def counts():
        folder.sync()
        messages = folder.messages()
        unseen = sum(1 for m in messages if "\\Seen" not in m.flags)
        # RFC 3501 §2.3.2: for another mailbox, the messages nobody has
        # claimed yet (the next SELECT would get them); nothing is claimed.
        recent = None if mine else folder.peek_recent()
        return len(messages), folder.uidnext, folder.uidvalidity, unseen, recent

    messages, uidnext, uidvalidity, unseen, recent = await store_call(session, counts)
    if mine:
        recent = selected.recent_count()
    return {b"MESSAGES": messages, b"RECENT": recent, b"UIDNEXT": uidnext,
            b"UIDVALIDITY": uidvalidity, b"UNSEEN": unseen}
