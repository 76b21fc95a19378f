"""Any-state commands and the state machine: greeting, CAPABILITY, NOOP, LOGOUT, ID, ENABLE, errors."""

from tests.imapd.conftest import connect, threaded


@threaded
def test_greeting_lists_capabilities(imap_server):
    """The greeting is OK with a CAPABILITY code offering STARTTLS and SASL-IR."""
    conn = connect(imap_server, login=False)
    assert conn.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert b"STARTTLS" in conn.greeting and b"SASL-IR" in conn.greeting
    conn.close()


@threaded
def test_capability_before_and_after_login(imap_server):
    """CAPABILITY shows AUTH= before login and the mailbox extensions after it."""
    conn = connect(imap_server, login=False)
    before = conn.transact("ok", "CAPABILITY").find(b"CAPABILITY")[0].split()
    assert b"AUTH=PLAIN" in before and b"IDLE" in before and b"LITERAL+" in before
    assert b"UIDPLUS" not in before
    conn.login("alice@example.test", "secret-alice")
    after = conn.transact("ok", "CAPABILITY").find(b"CAPABILITY")[0].split()
    for cap in (b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"NAMESPACE", b"UNSELECT", b"CHILDREN", b"ENABLE", b"ID"):
        assert cap in after
    assert b"STARTTLS" not in after and not any(c.startswith(b"AUTH=") for c in after)
    conn.close()


@threaded
def test_noop_and_logout(imap_server):
    """NOOP is OK in every state; LOGOUT answers BYE then OK and closes."""
    conn = connect(imap_server, login=False)
    conn.transact("ok", "NOOP")
    result = conn.transact("ok", "LOGOUT")
    assert result.untagged[0].startswith(b"BYE")
    assert conn.read_line() == b""
    conn.close()


@threaded
def test_unknown_and_malformed_commands(imap_server):
    """Unknown commands, missing commands and bad tags get BAD."""
    conn = connect(imap_server, login=False)
    assert b"Unknown command" in conn.transact("bad", "FROB").text
    conn.send(b"lonely\r\n")
    assert conn.read_line().startswith(b"lonely BAD")
    conn.send(b"\r\n")
    assert conn.read_line().startswith(b"* BAD")
    conn.transact("bad", "NOOP extra")
    conn.transact("bad", "UID NOOP")
    conn.close()


@threaded
def test_state_machine_errors(imap_server):
    """Commands outside their state get BAD (RFC 3501 §6), with a reason."""
    conn = connect(imap_server, login=False)
    assert b"Not authenticated" in conn.transact("bad", "SELECT INBOX").text
    conn.transact("bad", "FETCH 1 FLAGS")
    conn.transact("bad", "ENABLE IDLE")
    conn.login("alice@example.test", "secret-alice")
    assert b"Already authenticated" in conn.transact("bad", 'LOGIN "a" "b"').text
    conn.transact("bad", "STARTTLS")
    for command in ("FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL", "CLOSE", "UNSELECT",
                    "EXPUNGE", "CHECK", "COPY 1 Trash", "MOVE 1 Trash", "UID FETCH 1 FLAGS"):
        assert b"No mailbox selected" in conn.transact("bad", command).text, command
    conn.close()


@threaded
def test_id_and_enable(imap_server):
    """ID returns the server's name; ENABLE of an unknown extension enables nothing."""
    conn = connect(imap_server, login=False)
    result = conn.transact("ok", 'ID ("name" "pytest" "version" "1")')
    assert result.find(b"ID")[0].startswith(b'ID ("name" "mailstack"')
    conn.transact("ok", "ID NIL")
    conn.transact("bad", 'ID ("odd")')
    conn.login("alice@example.test", "secret-alice")
    assert conn.transact("ok", "ENABLE CONDSTORE").find(b"ENABLED") == [b"ENABLED"]
    conn.transact("bad", "ENABLE")
    conn.close()


@threaded
def test_pipelined_commands_run_in_order(imap_server):
    """Several commands sent in one packet are answered in order."""
    conn = connect(imap_server)
    conn.send(b"a NOOP\r\nb SELECT INBOX\r\nc NOOP\r\nd LOGOUT\r\n")
    lines = []
    while True:
        line = conn.read_line()
        if not line:
            break
        lines.append(line)
    tagged = [line.split(b" ")[0] for line in lines if not line.startswith(b"*")]
    assert tagged == [b"a", b"b", b"c", b"d"]
    conn.close()
