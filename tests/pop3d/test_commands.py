"""POP3 commands over loopback with poplib: every command, the state machine, octets and UIDLs."""

import poplib

import pytest_twisted

from tests.pop3d import helpers
from tests.pop3d.helpers import PASSWORDS, message

JOE = "joe@example.test"


@pytest_twisted.async_yield_fixture
async def server(config_dir):
    server = await helpers.start(config_dir)
    yield server
    await helpers.stop(server)


def _login(server, user=JOE, service="pop3"):
    client = server.client(service)
    client.user(user)
    client.pass_(PASSWORDS[user])
    return client


@pytest_twisted.ensureDeferred
async def test_greeting_capa_and_quit(server):
    """The greeting is +OK, CAPA lists RFC 2449 capabilities, QUIT says goodbye."""
    def talk():
        client = server.client()
        welcome = client.getwelcome()
        caps = client.capa()
        bye = client.quit()
        return welcome, caps, bye
    welcome, caps, bye = await server.in_thread(talk)
    assert welcome == b"+OK mailstack ready."
    for cap in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "USER", "STLS"):
        assert cap in caps
    assert caps["SASL"] == ["PLAIN", "LOGIN"]
    assert bye == b"+OK Logging out."


@pytest_twisted.ensureDeferred
async def test_stat_list_uidl_retr(server):
    """STAT/LIST octets are the CRLF sizes RETR sends; UIDL is Dovecot's %08Xu%08Xv."""
    bodies = [message("one"), message("two", body="a\n.dot line\n..two dots\n")]
    uids = server.deliver(JOE, *bodies)
    folder = server.mailbox(JOE).folder("INBOX")

    def talk():
        client = _login(server)
        stat = client.stat()
        listing = client.list()
        uidl = client.uidl()
        single = client.list(2), client.uidl(1)
        retr = [client.retr(i) for i in (1, 2)]
        client.quit()
        return stat, listing, uidl, single, retr
    stat, listing, uidl, single, retr = await server.in_thread(talk)
    sizes = [len(b.replace(b"\n", b"\r\n")) for b in bodies]
    assert stat == (2, sum(sizes))
    assert listing[0] == b"+OK 2 messages:"
    assert listing[1] == [b"1 %d" % sizes[0], b"2 %d" % sizes[1]]
    folder.sync()
    expected = [b"%d %08x%08x" % (i + 1, uid, folder.uidvalidity) for i, uid in enumerate(uids)]
    assert uidl[1] == expected
    assert single == (b"+OK 2 %d" % sizes[1], b"+OK " + expected[0])
    for (response, lines, octets), body, size in zip(retr, bodies, sizes):
        assert response == b"+OK %d octets" % size
        # poplib undoes the byte-stuffing; the lines are the stored ones.
        assert lines == body.rstrip(b"\n").split(b"\n")
        # poplib counts the CRLF octets it read, stuffing dots excluded: exactly the listed size.
        assert octets == size


@pytest_twisted.ensureDeferred
async def test_dele_rset_and_quit_update(server):
    """DELE marks, RSET unmarks, QUIT deletes through the store; a drop without QUIT deletes nothing."""
    server.deliver(JOE, message("a"), message("b"), message("c"))

    def talk():
        client = _login(server)
        dele = client.dele(1)
        again = _err(client.dele, 1)
        stat = client.stat()
        list_deleted = _err(client.list, 1)
        rset = client.rset()
        after_rset = client.stat()
        client.dele(2)
        client.close()  # no QUIT: nothing may be deleted
        server.wait_for_log("Disconnected: Connection closed")

        client = _login(server)
        kept = client.stat()
        client.dele(1)
        client.dele(3)
        bye = client.quit()

        client = _login(server)
        left = client.stat(), client.retr(1)[1]
        client.quit()
        return dele, again, stat, list_deleted, rset, after_rset, kept, bye, left
    dele, again, stat, list_deleted, rset, after_rset, kept, bye, left = await server.in_thread(talk)
    assert dele == b"+OK Marked to be deleted."
    assert again == "-ERR Message is deleted."
    assert stat[0] == 2
    assert list_deleted == "-ERR Message is deleted."
    assert rset == b"+OK"
    assert after_rset[0] == 3
    assert kept[0] == 3
    assert bye == b"+OK Logging out, messages deleted."
    assert left[0][0] == 1
    assert b"Subject: b" in left[1]
    box = server.mailbox(JOE).folder("INBOX")
    box.sync()
    assert len(box.messages()) == 1
    # Retrieved messages are flagged \Seen at QUIT, as Dovecot does.
    assert "\\Seen" in box.messages()[0].flags
    assert "del=2/3" in server.log_text()


def _err(function, *args):
    try:
        function(*args)
    except poplib.error_proto as err:
        return err.args[0].decode()
    raise AssertionError("expected -ERR from %s" % function.__name__)


@pytest_twisted.ensureDeferred
async def test_top(server):
    """TOP returns the header, the blank line and N body lines, byte-stuffed."""
    server.deliver(JOE, message("top", body="l1\n.l2\nl3\n"))

    def talk():
        client = _login(server)
        result = client.top(1, 0)[1], client.top(1, 2)[1], _err(client.top, 1, "x"), _err(client.top, 9, 1)
        client.quit()
        return result
    zero, two, bad, missing = await server.in_thread(talk)
    assert zero[-1] == b"" and zero[-2].startswith(b"Subject: top")
    assert two[-2:] == [b"l1", b".l2"]
    assert bad == "-ERR Invalid number of lines: x"
    assert missing == "-ERR There's no message 9."


@pytest_twisted.ensureDeferred
async def test_state_machine_and_bad_input(server):
    """Transaction commands before login fail; unknown commands and bad numbers get -ERR."""
    server.deliver(JOE, message("x"))

    def talk():
        client = server.client()
        before = _err(client.stat)
        unknown = _err(client._shortcmd, "FROB")
        pass_first = _err(client.pass_, "x")
        client.user(JOE)
        client.pass_(PASSWORDS[JOE])
        after = [
            _err(client.retr, 0), _err(client.retr, "abc"), _err(client.retr, 2),
            _err(client.user, JOE), client.noop(),
        ]
        client.quit()
        return before, unknown, pass_first, after
    before, unknown, pass_first, after = await server.in_thread(talk)
    assert before == "-ERR Unknown command in this state: STAT"
    assert unknown == "-ERR Unknown command: FROB"
    assert pass_first == "-ERR No user name given (send USER first)."
    assert after == ["-ERR There's no message 0.", "-ERR Invalid message number: abc",
                     "-ERR There's no message 2.", "-ERR Unknown command: USER", b"+OK"]
