"""IDLE: real push of deliveries, other sessions' changes and POP3 deletions; keep-alive."""

import poplib
import time

import pytest_twisted

from mailstack.store import store as mailstore
from tests.imapd.conftest import USERS, connect, in_thread, start_server, threaded


def _idle(conn):
    tag = conn.command("IDLE")
    assert conn.read_line() == b"+ idling"
    return tag


def _done(conn, tag):
    conn.send(b"DONE\r\n")
    return conn.finish(tag)


@pytest_twisted.ensureDeferred
async def test_delivery_is_pushed_to_idle(imap_server):
    """A local delivery through the store shows up as EXISTS in an IDLE session within a fraction of a second."""
    conn = await in_thread(connect, imap_server)
    await in_thread(conn.transact, "ok", "SELECT INBOX")
    tag = await in_thread(_idle, conn)
    store = mailstore.shared(imap_server.root.ctx)
    mailbox = store.mailbox("alice@example.test", "", None)
    started = time.monotonic()
    await mailbox.deliver_async(b"Subject: pushed\n\nhello\n")
    line = await in_thread(conn.read_line)
    elapsed = time.monotonic() - started
    assert line == b"* 1 EXISTS"
    assert elapsed < 1.0  # generous: CI machines are loaded
    assert (await in_thread(conn.read_line)).startswith(b"* ")  # RECENT
    result = await in_thread(_done, conn, tag)
    assert result.status == "ok"
    conn.close()


@threaded
def test_other_session_changes_are_pushed(imap_server):
    """Another IMAP session's APPEND, STORE and EXPUNGE reach an IDLE session as EXISTS, FETCH and EXPUNGE."""
    watcher = connect(imap_server)
    actor = connect(imap_server)
    actor.append("ok", "INBOX", b"Subject: one\r\n\r\n1\r\n")
    watcher.transact("ok", "SELECT INBOX")
    actor.transact("ok", "SELECT INBOX")
    tag = _idle(watcher)
    actor.append("ok", "INBOX", b"Subject: two\r\n\r\n2\r\n")
    assert watcher.read_line() == b"* 2 EXISTS"
    assert watcher.read_line().endswith(b"RECENT")
    actor.transact("ok", "STORE 1 +FLAGS (\\Flagged)")
    assert watcher.read_line() == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"  # watcher's since SELECT
    actor.transact("ok", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert watcher.read_line() == b"* 1 FETCH (UID 1 FLAGS (\\Deleted \\Flagged \\Recent))"
    actor.transact("ok", "EXPUNGE")
    assert watcher.read_line() == b"* 1 EXPUNGE"
    assert _done(watcher, tag).status == "ok"
    assert watcher.transact("ok", "FETCH 1 UID").untagged == [b"1 FETCH (UID 2)"]
    watcher.transact("bad", "DONE")
    watcher.close()
    actor.close()


@threaded
def test_idle_needs_done(imap_server):
    """Anything but DONE ends IDLE with BAD."""
    conn = connect(imap_server)
    conn.transact("ok", "SELECT INBOX")
    tag = _idle(conn)
    conn.send(b"NOOP\r\n")
    assert conn.finish(tag).status == "bad"
    conn.transact("ok", "NOOP")
    conn.close()


@pytest_twisted.ensureDeferred
async def test_pop3_deletion_and_keepalive(config_dir):
    """A POP3 DELE+QUIT shows up as EXPUNGE in an IMAP IDLE session; IDLE sends '* OK Still here'."""
    from tests.imapd.conftest import add_users
    add_users(config_dir, "auth_failure_delay = 0\nmail_fsync = never\n")
    server = await start_server(config_dir, (
        "imap tcp:0:interface=127.0.0.1 -o imapd_idle_notify_interval=0.3\n"
        "pop3 tcp:0:interface=127.0.0.1\n"))
    pop3 = server.root.getServiceNamed("pop3")
    pop3_port = (await list(pop3)[0]._waitingForPort).getHost().port
    try:
        def body():
            conn = connect(server)
            conn.append("ok", "INBOX", b"Subject: a\r\n\r\na\r\n")
            conn.append("ok", "INBOX", b"Subject: b\r\n\r\nb\r\n")
            conn.transact("ok", "SELECT INBOX")
            tag = _idle(conn)
            assert conn.read_line() == b"* OK Still here"
            pop = poplib.POP3("127.0.0.1", pop3_port, timeout=10)
            pop.user("alice@example.test")
            pop.pass_(USERS["alice@example.test"])
            pop.dele(1)
            started = time.monotonic()
            pop.quit()
            line = conn.read_line()
            while line == b"* OK Still here":
                line = conn.read_line()
            assert line == b"* 1 EXPUNGE"
            assert time.monotonic() - started < 1.0
            assert _done(conn, tag).status == "ok"
            conn.close()

        await in_thread(body)
    finally:
        await server.root.stopService()
        mailstore.shared(server.root.ctx).close()
