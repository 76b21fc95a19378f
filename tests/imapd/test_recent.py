# -*- test-case-name: tests.imapd.test_recent -*-
"""\\Recent (RFC 3501 §2.3.2): new arrivals go to one read-write session; STATUS RECENT counts unclaimed mail."""

import imapclient

from mailstack.store import store as mailstore
from tests.imapd.conftest import USERS, connect, threaded


def _deliver(server, *subjects):
    """Deliver messages to alice's INBOX through a second store, as another process (local delivery) would."""
    store = mailstore.MailStore(hostname="other")
    mailbox = store.mailbox("alice@example.test", str(server.maildir().parent)).ensure()
    for subject in subjects:
        mailbox.deliver(b"Subject: %s\n\nbody\n" % subject.encode())
    store.close()


def _search(conn, criteria):
    line = conn.transact("ok", "SEARCH " + criteria).find(b"SEARCH")[0]
    return [int(n) for n in line.split()[1:]]


def _status_recent(conn, name):
    line = conn.transact("ok", "STATUS %s (MESSAGES RECENT)" % name).find(b"STATUS")[0]
    return line


@threaded
def test_arrival_is_recent_for_the_selected_session(imap_server):
    """A message delivered while a session has INBOX selected read-write is \\Recent for it and for no later session."""
    _deliver(imap_server, "old")
    first = connect(imap_server)
    assert b"1 RECENT" in first.transact("ok", "SELECT INBOX").untagged
    _deliver(imap_server, "new")
    result = first.transact("ok", "NOOP")
    assert b"2 EXISTS" in result.untagged and b"2 RECENT" in result.untagged
    assert _search(first, "RECENT") == [1, 2] and _search(first, "NEW") == [1, 2]
    second = connect(imap_server)
    assert b"0 RECENT" in second.transact("ok", "SELECT INBOX").untagged
    assert _search(second, "RECENT") == [] and _search(second, "OLD") == [1, 2]
    assert first.transact("ok", "FETCH 2 FLAGS").untagged == [b"2 FETCH (FLAGS (\\Recent))"]
    assert second.transact("ok", "FETCH 2 FLAGS").untagged == [b"2 FETCH (FLAGS ())"]
    first.close()
    second.close()


@threaded
def test_examine_does_not_claim_arrivals(imap_server):
    """A read-only (EXAMINE) session sees new mail without \\Recent; the next SELECT gets it."""
    watcher = connect(imap_server)
    watcher.transact("ok", "EXAMINE INBOX")
    _deliver(imap_server, "one")
    result = watcher.transact("ok", "NOOP")
    assert b"1 EXISTS" in result.untagged
    assert _search(watcher, "RECENT") == []
    selector = connect(imap_server)
    assert b"1 RECENT" in selector.transact("ok", "SELECT INBOX").untagged
    watcher.close()
    selector.close()


@threaded
def test_exactly_one_of_two_sessions_gets_recent(imap_server):
    """With two read-write sessions on INBOX, each arrival is \\Recent in exactly one of them."""
    one, two = connect(imap_server), connect(imap_server)
    one.transact("ok", "SELECT INBOX")
    two.transact("ok", "SELECT INBOX")
    _deliver(imap_server, "a", "b", "c")
    for conn in (one, two):
        assert b"3 EXISTS" in conn.transact("ok", "NOOP").untagged
    found = _search(one, "RECENT") + _search(two, "RECENT")
    assert sorted(found) == [1, 2, 3]
    one.close()
    two.close()


@threaded
def test_append_from_other_session_is_recent_for_selected(imap_server):
    """Another session's APPEND to the mailbox we have selected read-write is \\Recent for us, not for it."""
    holder, appender = connect(imap_server), connect(imap_server)
    holder.transact("ok", "SELECT INBOX")
    appender.append("ok", "INBOX", b"Subject: appended\r\n\r\nx\r\n")
    assert b"1 RECENT" in holder.transact("ok", "NOOP").untagged
    assert _search(holder, "RECENT") == [1]
    assert b"0 RECENT" in appender.transact("ok", "SELECT INBOX").untagged
    holder.close()
    appender.close()


@threaded
def test_expunged_recent_message_leaves_the_count(imap_server):
    """Expunging a \\Recent message lowers the RECENT count that STATUS reports for the selected mailbox."""
    _deliver(imap_server, "a", "b")
    conn = connect(imap_server)
    conn.transact("ok", "SELECT INBOX")
    conn.transact("ok", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    conn.transact("ok", "EXPUNGE")
    assert b"(MESSAGES 1 RECENT 1)" in _status_recent(conn, "INBOX")
    conn.close()


@threaded
def test_status_recent_counts_without_claiming(imap_server):
    """STATUS RECENT on an unselected mailbox counts unclaimed mail and claims nothing (imapclient)."""
    _deliver(imap_server, "a", "b")
    client = imapclient.IMAPClient("127.0.0.1", port=imap_server.ports["imap"], ssl=False, timeout=10)
    client.login("alice@example.test", USERS["alice@example.test"])
    assert client.folder_status("INBOX", ["MESSAGES", "RECENT"]) == {b"MESSAGES": 2, b"RECENT": 2}
    client.select_folder("Drafts")
    assert client.folder_status("INBOX", ["RECENT"])[b"RECENT"] == 2
    assert client.select_folder("INBOX")[b"RECENT"] == 2
    assert client.folder_status("INBOX", ["RECENT"])[b"RECENT"] == 2  # ours, as selected
    other = connect(imap_server)
    assert b"RECENT 0)" in _status_recent(other, "INBOX")
    _deliver(imap_server, "c")
    client.noop()
    assert b"RECENT 0)" in _status_recent(other, "INBOX")  # the selected session claimed it
    assert client.folder_status("INBOX", ["RECENT"])[b"RECENT"] == 3
    client.logout()
    other.close()
