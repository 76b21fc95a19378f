"""SELECT/EXAMINE/CLOSE/UNSELECT/CHECK, APPEND, STORE, COPY, MOVE, EXPUNGE, UIDPLUS and persistence."""

import re

import pytest_twisted

from tests.imapd.conftest import connect, in_thread, start_server, threaded

MESSAGE = b"From: Alice <alice@example.test>\r\nSubject: %s\r\n\r\nbody %s\r\n"


def _fill(conn, count, mailbox="INBOX"):
    uids = []
    for n in range(count):
        text = ("m%d" % (n + 1)).encode()
        result = conn.append("ok", mailbox, MESSAGE % (text, text))
        uids.append(int(re.match(rb"\[APPENDUID \d+ (\d+)\]", result.text).group(1)))
    return uids


@threaded
def test_select_and_examine_responses(imap_server):
    """SELECT reports FLAGS, PERMANENTFLAGS, EXISTS, RECENT, UNSEEN, UIDVALIDITY, UIDNEXT; EXAMINE is read-only."""
    conn = connect(imap_server)
    _fill(conn, 3)
    result = conn.transact("ok", "SELECT INBOX")
    assert result.text == b"[READ-WRITE] Select completed."
    assert b"FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)" in result.untagged
    assert b"3 EXISTS" in result.untagged and b"3 RECENT" in result.untagged
    assert b"OK [UNSEEN 1] First unseen." in result.untagged
    assert result.find(b"OK [UIDVALIDITY ") and b"OK [UIDNEXT 4] Predicted next UID" in result.untagged
    assert b"\\*" in result.find(b"OK [PERMANENTFLAGS")[0]
    again = conn.transact("ok", "EXAMINE INBOX")
    assert again.text == b"[READ-ONLY] Examine completed." and b"0 RECENT" in again.untagged
    assert conn.transact("no", "STORE 1 +FLAGS (\\Seen)").text.startswith(b"[READ-ONLY]")
    conn.transact("no", "EXPUNGE")
    conn.transact("no", "SELECT Nowhere")
    # A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1).
    conn.transact("bad", "FETCH 1 FLAGS")
    conn.close()


@threaded
def test_append_flags_date_and_appenduid(imap_server):
    """APPEND stores flags, keywords and the internal date, answers APPENDUID, and TRYCREATE for a missing mailbox."""
    conn = connect(imap_server)
    tag = conn.command(b'APPEND INBOX (\\Flagged $Work) "05-Mar-2021 10:20:30 +0100" {12+}\r\nSubject: x\r\n')
    result = conn.finish(tag)
    assert result.status == "ok" and re.match(rb"\[APPENDUID \d+ 1\] ", result.text)
    conn.transact("ok", "SELECT INBOX")
    fetched = conn.transact("ok", "FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)").untagged[0]
    assert b"\\Flagged" in fetched and b"$Work" in fetched and b"RFC822.SIZE 12" in fetched
    date = re.search(rb'INTERNALDATE "([^"]+)"', fetched).group(1)
    import email.utils
    stamp = email.utils.mktime_tz(email.utils.parsedate_tz(date.replace(b"-", b" ", 2).decode()))
    assert stamp == 1614936030
    assert conn.append("no", "Nowhere", b"Subject: y\r\n\r\n").text.startswith(b"[TRYCREATE]")
    conn.transact("bad", 'APPEND INBOX (\\Bogus) {1+}\r\nx')
    conn.transact("bad", 'APPEND INBOX "31-Foo-2020 00:00:00 +0000" {1+}\r\nx')
    conn.close()


@threaded
def test_store_flags_and_keywords(imap_server):
    """STORE +FLAGS/-FLAGS/FLAGS and .SILENT change flags and report them (with UID for UID STORE)."""
    conn = connect(imap_server)
    _fill(conn, 3)
    conn.transact("ok", "SELECT INBOX")
    result = conn.transact("ok", "STORE 1:2 +FLAGS (\\Seen $Label1)")
    assert result.untagged == [b"1 FETCH (FLAGS ($Label1 \\Recent \\Seen))", b"2 FETCH (FLAGS ($Label1 \\Recent \\Seen))"]
    assert conn.transact("ok", "STORE 1 -FLAGS.SILENT ($Label1)").untagged == []
    result = conn.transact("ok", "UID STORE 3 FLAGS (\\Answered)")
    assert result.untagged == [b"3 FETCH (UID 3 FLAGS (\\Answered \\Recent))"]
    assert conn.transact("ok", "FETCH 1:3 FLAGS").untagged == [
        b"1 FETCH (FLAGS (\\Recent \\Seen))", b"2 FETCH (FLAGS ($Label1 \\Recent \\Seen))",
        b"3 FETCH (FLAGS (\\Answered \\Recent))"]
    conn.transact("bad", "STORE 1 +FLAGS (\\Bogus)")
    conn.transact("bad", "STORE 1 FROB (\\Seen)")
    conn.transact("bad", "STORE 9 +FLAGS (\\Seen)")
    conn.transact("ok", "UID STORE 99 +FLAGS (\\Seen)")
    conn.close()


@threaded
def test_expunge_and_uid_expunge(imap_server):
    """EXPUNGE removes \\Deleted messages with EXPUNGE responses; UID EXPUNGE only those in its set."""
    conn = connect(imap_server)
    _fill(conn, 5)
    conn.transact("ok", "SELECT INBOX")
    conn.transact("ok", "STORE 1,2,4 +FLAGS.SILENT (\\Deleted)")
    assert conn.transact("ok", "UID EXPUNGE 4:5").untagged == [b"4 EXPUNGE"]
    assert conn.transact("ok", "EXPUNGE").untagged == [b"2 EXPUNGE", b"1 EXPUNGE"]
    assert conn.transact("ok", "UID SEARCH ALL").untagged == [b"SEARCH 3 5"]
    conn.close()


@threaded
def test_copy_and_move_with_copyuid(imap_server):
    """COPY answers COPYUID and keeps flags; MOVE sends COPYUID then EXPUNGE; TRYCREATE for a missing target."""
    conn = connect(imap_server)
    _fill(conn, 3)
    conn.transact("ok", "SELECT INBOX")
    conn.transact("ok", "STORE 2 +FLAGS.SILENT (\\Flagged)")
    result = conn.transact("ok", "COPY 2:3 Archive")
    assert re.match(rb"\[COPYUID \d+ 2:3 1:2\] Copy completed.", result.text)
    result = conn.transact("ok", "UID MOVE 1 Trash")
    assert re.match(rb"OK \[COPYUID \d+ 1 1\] Moved UIDs.", result.untagged[0])
    assert result.untagged[1:] == [b"1 EXPUNGE"]
    assert conn.transact("no", "COPY 1 Nowhere").text.startswith(b"[TRYCREATE]")
    conn.transact("ok", "UID COPY 99 Archive")
    conn.transact("ok", "EXAMINE Archive")
    assert conn.transact("ok", "FETCH 1 FLAGS").untagged == [b"1 FETCH (FLAGS (\\Flagged))"]
    conn.close()


@threaded
def test_close_unselect_check(imap_server):
    """CLOSE expunges silently, UNSELECT does not; CHECK is OK."""
    conn = connect(imap_server)
    _fill(conn, 2)
    conn.transact("ok", "SELECT INBOX")
    conn.transact("ok", "CHECK")
    conn.transact("ok", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    conn.transact("ok", "UNSELECT")
    assert b"2 EXISTS" in conn.transact("ok", "SELECT INBOX").untagged
    assert conn.transact("ok", "CLOSE").untagged == []
    assert b"1 EXISTS" in conn.transact("ok", "SELECT INBOX").untagged
    conn.close()


@pytest_twisted.ensureDeferred
async def test_flags_and_uids_persist_across_restart(imap_server):
    """Flags, keywords and UIDs are the same after the server restarts (they live in the store)."""
    def before():
        conn = connect(imap_server)
        _fill(conn, 2)
        conn.transact("ok", "SELECT INBOX")
        conn.transact("ok", "STORE 2 +FLAGS ($Important \\Answered)")
        validity = conn.transact("ok", "STATUS INBOX (UIDVALIDITY)").untagged[0]
        conn.close()
        return validity

    validity = await in_thread(before)
    await imap_server.root.stopService()
    from mailstack.store import store as mailstore
    mailstore.shared(imap_server.root.ctx).close()
    server = await start_server(imap_server.config_dir)
    imap_server.root, imap_server.ports = server.root, server.ports

    def after():
        conn = connect(imap_server)
        assert conn.transact("ok", "STATUS INBOX (UIDVALIDITY)").untagged[0] == validity
        conn.transact("ok", "SELECT INBOX")
        lines = conn.transact("ok", "FETCH 1:2 (UID FLAGS)").untagged
        conn.close()
        return lines

    assert await in_thread(after) == [b"1 FETCH (UID 1 FLAGS ())",
                                      b"2 FETCH (UID 2 FLAGS ($Important \\Answered))"]


@threaded
def test_uidvalidity_change_ends_session(imap_server):
    """When the folder's UIDVALIDITY changes under a session (uidlist removed), the session ends with BYE."""
    import os
    conn = connect(imap_server)
    _fill(conn, 1)
    conn.transact("ok", "SELECT INBOX")
    os.unlink(imap_server.maildir() / "dovecot-uidlist")
    tag = conn.command("NOOP")
    lines = []
    while True:
        line = conn.read_line()
        if not line:
            break
        lines.append(line)
    assert any(line.startswith(b"* BYE UIDVALIDITY changed") for line in lines), lines
    assert not any(line.startswith(tag + b" OK") for line in lines)
    conn.close()
