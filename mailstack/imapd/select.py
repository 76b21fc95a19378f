# -*- test-case-name: tests.imapd.test_messages -*-
"""Selecting and leaving a mailbox: SELECT, EXAMINE, CLOSE, UNSELECT, CHECK.

RFC 3501 §6.3.1-2, §6.4.1-2 and UNSELECT (RFC 3691).  SELECT answers as
Dovecot does (FLAGS, PERMANENTFLAGS, EXISTS, RECENT, UNSEEN, UIDVALIDITY,
UIDNEXT), from the store's in-memory view after one sync: no message file
is opened, so a 100,000-message INBOX selects in the time of one directory
scan.  A SELECT that fails leaves no mailbox selected (§6.3.1).
"""

from mailstack.imapd.mailboxes import mailbox_name, store_call
from mailstack.imapd.selected import PERMANENT_FLAGS, SelectedMailbox, flag_list
from mailstack.store.errors import FolderNotFound


async def select(session, tag, cursor, uid):
    return await _select(session, cursor, True)


async def examine(session, tag, cursor, uid):
    return await _select(session, cursor, False)


async def _select(session, cursor, writable):
    cursor.sp()
    name = mailbox_name(cursor.astring())
    cursor.end()
    if session.selected is not None:
        session.deselect()
    folder = session.account.folder(name)
    selected = SelectedMailbox(folder, name, writable, session.factory.store.run, session.mailbox_changed)
    await store_call(session, _require, folder)
    try:
        await selected.open()
    except Exception:
        selected.close()
        raise
    session.selected = selected
    session.state = "select"
    messages = selected.messages
    session.untagged(b"FLAGS " + flag_list(selected.keywords))
    permanent = " ".join(PERMANENT_FLAGS + tuple(selected.keywords) + ("\\*",)).encode("utf-8")
    session.untagged(b"OK [PERMANENTFLAGS (%s)] Flags permitted." % permanent)
    session.untagged(b"%d EXISTS" % len(messages))
    session.untagged(b"%d RECENT" % len(selected.recent))
    for seq, message in enumerate(messages, 1):
        if "\\Seen" not in message.flags:
            session.untagged(b"OK [UNSEEN %d] First unseen." % seq)
            break
    session.untagged(b"OK [UIDVALIDITY %d] UIDs valid" % selected.uidvalidity)
    session.untagged(b"OK [UIDNEXT %d] Predicted next UID" % selected.uidnext)
    return (b"[READ-WRITE] Select completed." if writable else b"[READ-ONLY] Examine completed.")


def _require(folder):
    """Raise FolderNotFound unless ``folder`` exists (runs in the store's thread)."""
    if not folder.exists():
        raise FolderNotFound("folder %s does not exist" % folder.name)


async def close(session, tag, cursor, uid):
    cursor.end()
    selected = session.selected
    if selected.writable:
        deleted = [m.uid for m in selected.messages if "\\Deleted" in m.flags]
        if deleted:
            # RFC 3501 §6.4.2: expunge silently, no EXPUNGE responses.
            await store_call(session, selected.folder.expunge, deleted)
    session.deselect()
    return b"Close completed."


async def unselect(session, tag, cursor, uid):
    cursor.end()
    session.deselect()
    return b"Unselect completed."


async def check(session, tag, cursor, uid):
    cursor.end()
    await session.poll()
    return b"Check completed."

