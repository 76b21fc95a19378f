"""CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS, NAMESPACE and mailbox-name checks."""

import pytest

from mailstack.imapd.errors import No
from mailstack.imapd.mailboxes import mailbox_name, pattern_regexp
from tests.imapd.conftest import connect, threaded


@pytest.mark.parametrize("raw", [
    b"..", b"a..b", b"../etc", b"/etc/passwd", b"a/b", b"~root", b"a\x00b", b"tab\tname", b"x" * 256,
    b".hidden", b"trailing.", b"INBOX.sub", b"&Jjo", b"caf\xc3\xa9",
], ids=["dotdot", "inner-dotdot", "parent", "absolute", "slash", "tilde", "nul", "control", "too-long",
        "empty-level", "trailing-empty", "below-inbox", "bad-mutf7", "8bit"])
def test_bad_mailbox_names_are_refused(raw):
    """Names that could leave the maildir or are not valid mUTF-7 raise NO."""
    with pytest.raises(No):
        mailbox_name(raw)


def test_good_mailbox_names():
    """INBOX is case-insensitive; mUTF-7 is decoded; hierarchy uses '.'."""
    assert mailbox_name(b"inbox") == "INBOX"
    assert mailbox_name(b"Entw&APw-rfe") == "Entwürfe"
    assert mailbox_name(b"Work.2024") == "Work.2024"


def test_list_patterns():
    """'*' crosses the separator, '%' does not."""
    assert pattern_regexp("*").match("a.b")
    assert pattern_regexp("%").match("a") and not pattern_regexp("%").match("a.b")
    assert pattern_regexp("inbox").match("INBOX")


@threaded
def test_list_shows_special_use_and_children(imap_server):
    """LIST shows INBOX, the auto-created special-use folders and CHILDREN attributes."""
    conn = connect(imap_server)
    conn.transact("ok", "CREATE Work.2024")
    lines = conn.transact("ok", 'LIST "" "*"').find(b"LIST")
    assert b'LIST (\\HasNoChildren) "." INBOX' in lines
    for name, attr in (("Sent", b"\\Sent"), ("Drafts", b"\\Drafts"), ("Trash", b"\\Trash"),
                       ("Junk", b"\\Junk"), ("Archive", b"\\Archive")):
        assert any(line.endswith(b" " + name.encode()) and attr in line for line in lines), (name, lines)
    assert b'LIST (\\Noselect \\HasChildren) "." Work' in lines
    assert b'LIST (\\HasNoChildren) "." Work.2024' in lines
    top = conn.transact("ok", 'LIST "" "%"').find(b"LIST")
    assert not any(line.endswith(b"Work.2024") for line in top)
    assert conn.transact("ok", 'LIST "" ""').untagged == [b'LIST (\\Noselect) "." ""']
    special = conn.transact("ok", 'LIST (SPECIAL-USE) "" "*"').find(b"LIST")
    assert len(special) == 5
    conn.close()


@threaded
def test_create_delete(imap_server):
    """CREATE makes a folder, twice is ALREADYEXISTS; DELETE removes it; INBOX cannot be deleted."""
    conn = connect(imap_server)
    conn.transact("ok", "CREATE Projects")
    assert conn.transact("no", "CREATE Projects").text.startswith(b"[ALREADYEXISTS]")
    conn.transact("no", "CREATE INBOX")
    conn.transact("no", 'CREATE "../escape"')
    conn.transact("no", 'CREATE "a/b"')
    conn.transact("ok", "DELETE Projects")
    assert conn.transact("no", "DELETE Projects").text.startswith(b"[NONEXISTENT]")
    conn.transact("no", "DELETE INBOX")
    conn.transact("ok", 'CREATE "Entw&APw-rfe"')
    assert b'LIST (\\HasNoChildren) "." Entw&APw-rfe' in conn.transact("ok", 'LIST "" "Entw*"').untagged
    conn.transact("bad", "CREATE")
    conn.close()
    assert (imap_server.maildir() / ".Entw&APw-rfe" / "cur").is_dir()


@threaded
def test_rename_folder_and_inbox(imap_server):
    """RENAME moves a folder with its children; RENAME INBOX moves its messages and leaves INBOX empty."""
    conn = connect(imap_server)
    conn.transact("ok", "CREATE Old")
    conn.transact("ok", "CREATE Old.Child")
    conn.transact("ok", "RENAME Old New")
    names = b"\n".join(conn.transact("ok", 'LIST "" "*"').untagged)
    assert b"New.Child" in names and b"Old" not in names
    conn.transact("no", "RENAME Missing Other")
    conn.transact("no", "RENAME New Trash")
    conn.transact("no", "RENAME New INBOX")
    conn.append("ok", "INBOX", b"Subject: one\r\n\r\n1\r\n")
    conn.append("ok", "INBOX", b"Subject: two\r\n\r\n2\r\n")
    conn.transact("ok", "RENAME INBOX Saved")
    assert b"MESSAGES 0" in conn.transact("ok", "STATUS INBOX (MESSAGES)").untagged[0]
    assert b"MESSAGES 2" in conn.transact("ok", "STATUS Saved (MESSAGES)").untagged[0]
    conn.close()


@threaded
def test_subscribe_lsub(imap_server):
    """SUBSCRIBE/UNSUBSCRIBE change what LSUB lists; defaults are subscribed."""
    conn = connect(imap_server)
    conn.transact("ok", "CREATE Lists.Python")
    conn.transact("ok", "SUBSCRIBE Lists.Python")
    lsub = conn.transact("ok", 'LSUB "" "*"').find(b"LSUB")
    assert b'LSUB () "." Lists.Python' in lsub and b'LSUB () "." Sent' in lsub
    assert b'LSUB (\\Noselect) "." Lists' in conn.transact("ok", 'LSUB "" "%"').untagged
    subscribed = conn.transact("ok", 'LIST (SUBSCRIBED) "" "*" RETURN (CHILDREN)').find(b"LIST")
    assert any(b"\\Subscribed" in line and line.endswith(b"Lists.Python") for line in subscribed)
    conn.transact("ok", "UNSUBSCRIBE Lists.Python")
    assert not [x for x in conn.transact("ok", 'LSUB "" "*"').untagged if x.endswith(b"Lists.Python")]
    conn.close()


@threaded
def test_status(imap_server):
    """STATUS reports MESSAGES, RECENT, UIDNEXT, UIDVALIDITY, UNSEEN; unknown items are BAD; missing mailbox NO."""
    conn = connect(imap_server)
    conn.append("ok", "Drafts", b"Subject: d\r\n\r\nd\r\n", flags="(\\Seen)")
    conn.append("ok", "Drafts", b"Subject: e\r\n\r\ne\r\n")
    line = conn.transact("ok", "STATUS Drafts (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)").untagged[0]
    assert line.startswith(b"STATUS Drafts (MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY ")  # appended, unclaimed
    assert line.endswith(b" UNSEEN 1)")
    conn.transact("bad", "STATUS Drafts (BOGUS)")
    conn.transact("bad", "STATUS Drafts ()")
    assert conn.transact("no", "STATUS Nowhere (MESSAGES)").text.startswith(b"[NONEXISTENT]")
    conn.close()


@threaded
def test_namespace(imap_server):
    """NAMESPACE: one personal namespace with '.' as separator."""
    conn = connect(imap_server)
    assert conn.transact("ok", "NAMESPACE").untagged == [b'NAMESPACE (("" ".")) NIL NIL']
    conn.close()
