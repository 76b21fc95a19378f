"""FETCH: ENVELOPE, BODYSTRUCTURE, BODY[section]<partial>, PEEK and \\Seen, RFC822.*, macros, errors."""

from mailstack.imapd import fetch, mime
from mailstack.imapd.syntax import encode_list
from tests.imapd.conftest import connect, threaded

MULTIPART = (
    b"From: \"Alice A.\" <alice@example.test>\r\n"
    b"To: bob@example.test, Carol <carol@example.test>\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= report\r\n"
    b"Date: Tue, 02 Mar 2021 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
    b"\r\n"
    b"preamble\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"hello world\r\n"
    b"second line\r\n"
    b"--XX\r\n"
    b"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
    b"\r\n"
    b"AAECAw==\r\n"
    b"--XX\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"From: dave@example.test\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--XX--\r\n"
    b"epilogue\r\n"
)


def test_sections_of_a_multipart():
    """Part numbers, MIME, HEADER and TEXT of an encapsulated message cut the original octets."""
    entity = mime.Entity(MULTIPART)

    def section(spec):
        from mailstack.imapd.syntax import Cursor
        item = fetch.parse_attributes(Cursor(b"BODY.PEEK[" + spec + b"]"))[0]
        return fetch.section_data(item, entity)

    assert section(b"1") == b"hello world\r\nsecond line"
    assert section(b"1.MIME") == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    assert section(b"2") == b"AAECAw=="
    assert section(b"3.HEADER") == b"Subject: inner\r\nFrom: dave@example.test\r\n\r\n"
    assert section(b"3.TEXT") == b"inner body"
    assert section(b"3.1") == b"inner body"
    assert section(b"HEADER.FIELDS (SUBJECT message-id)") == (
        b"Subject: =?utf-8?q?caf=C3=A9?= report\r\nMessage-ID: <m1@example.test>\r\n\r\n")
    assert section(b"HEADER.FIELDS.NOT (From To Subject Date Message-ID MIME-Version)").startswith(b"Content-Type:")
    assert section(b"9") == b""
    assert section(b"") == MULTIPART


def test_bodystructure_of_a_multipart():
    """BODYSTRUCTURE lists each part with sizes and lines, then the subtype and extension data."""
    entity = mime.Entity(MULTIPART)
    encoded = encode_list(fetch.body_structure(entity, True))
    assert encoded.startswith(
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 24 2 NIL NIL NIL NIL)'
        b'("APPLICATION" "OCTET-STREAM" ("NAME" "a.bin") NIL NIL "BASE64" 8 NIL ("ATTACHMENT" ("FILENAME" "a.bin")) '
        b'NIL NIL)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 53 (')
    assert encoded.endswith(b' "MIXED" ("BOUNDARY" "XX") NIL NIL NIL)')
    simple = encode_list(fetch.body_structure(entity, False))
    assert simple.endswith(b' "MIXED")')


def test_envelope():
    """ENVELOPE keeps encoded words, splits addresses, and defaults Sender/Reply-To to From."""
    env = encode_list(fetch.envelope(mime.Entity(MULTIPART)))
    assert env == (b'("Tue, 02 Mar 2021 10:00:00 +0000" "=?utf-8?q?caf=C3=A9?= report" '
                   b'(("Alice A." NIL "alice" "example.test")) (("Alice A." NIL "alice" "example.test")) '
                   b'(("Alice A." NIL "alice" "example.test")) '
                   b'((NIL NIL "bob" "example.test")("Carol" NIL "carol" "example.test")) NIL NIL NIL '
                   b'"<m1@example.test>")')


@threaded
def test_fetch_over_the_wire(imap_server):
    """FETCH returns literals of the right size; BODY.PEEK keeps \\Seen off, BODY[] sets it and reports FLAGS."""
    conn = connect(imap_server)
    conn.append("ok", "INBOX", MULTIPART)
    conn.transact("ok", "SELECT INBOX")
    result = conn.transact("ok", "FETCH 1 (BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)] UID)")
    assert result.untagged == [b"1 FETCH (BODY[1] {24}\r\nhello world\r\nsecond line "
                               b"BODY[HEADER.FIELDS (SUBJECT)] {41}\r\nSubject: =?utf-8?q?caf=C3=A9?= report\r\n\r\n"
                               b" UID 1)"]
    assert conn.transact("ok", "FETCH 1 FLAGS").untagged == [b"1 FETCH (FLAGS (\\Recent))"]  # ours since SELECT
    result = conn.transact("ok", "FETCH 1 BODY[]<0.4>")
    assert result.untagged == [b"1 FETCH (BODY[]<0> {4}\r\nFrom FLAGS (\\Recent \\Seen))"]
    result = conn.transact("ok", "UID FETCH 1 (RFC822.SIZE RFC822.HEADER)")
    assert result.untagged[0].startswith(b"1 FETCH (UID 1 RFC822.SIZE %d RFC822.HEADER {" % len(MULTIPART))
    full = conn.transact("ok", "FETCH 1 RFC822").untagged[0]
    assert MULTIPART in full
    assert conn.transact("ok", "FETCH 1 FAST").untagged[0].startswith(b"1 FETCH (FLAGS (\\Recent \\Seen) INTERNALDATE \"")
    assert b"ENVELOPE (" in conn.transact("ok", "FETCH 1 ALL").untagged[0]
    assert b"BODY ((" in conn.transact("ok", "FETCH 1 FULL").untagged[0]
    assert b"BODYSTRUCTURE ((" in conn.transact("ok", "FETCH 1 BODYSTRUCTURE").untagged[0]
    conn.transact("bad", "FETCH 1 (FROB)")
    conn.transact("bad", "FETCH 1 BODY[MIME]")
    conn.transact("bad", "FETCH 0 FLAGS")
    conn.transact("bad", "FETCH 2 FLAGS")
    conn.transact("bad", "FETCH 1")
    assert conn.transact("ok", "UID FETCH 5:9 FLAGS").untagged == []
    assert conn.transact("ok", "UID FETCH 9:* FLAGS").untagged == [b"1 FETCH (UID 1 FLAGS (\\Recent \\Seen))"]
    conn.close()


@threaded
def test_examine_does_not_set_seen(imap_server):
    """In a read-only mailbox, BODY[] does not set \\Seen."""
    conn = connect(imap_server)
    conn.append("ok", "INBOX", b"Subject: s\r\n\r\nbody\r\n")
    conn.transact("ok", "EXAMINE INBOX")
    assert b"FLAGS" not in conn.transact("ok", "FETCH 1 BODY[TEXT]").untagged[0]
    assert conn.transact("ok", "FETCH 1 FLAGS").untagged == [b"1 FETCH (FLAGS ())"]
    conn.close()


def test_structure_cache_is_bounded():
    """The structure cache evicts least recently used entries past its byte bound."""
    from mailstack.imapd.cache import StructureCache
    cache = StructureCache(max_bytes=1000)
    for n in range(10):
        cache.put(("/m", "base%d" % n), {b"ENVELOPE": b"x" * 100})
    assert len(cache) == 3 and cache.size <= 1000
    assert cache.get(("/m", "base0")) is None and cache.get(("/m", "base9")) is not None
    cache.put(("/m", "base9"), {b"BODY": b"y"})
    assert set(cache.get(("/m", "base9"))) == {b"ENVELOPE", b"BODY"}


@threaded
def test_repeated_structure_fetch_uses_cache(imap_server):
    """A second ENVELOPE/BODYSTRUCTURE fetch answers the same, from the service's cache."""
    conn = connect(imap_server)
    conn.append("ok", "INBOX", MULTIPART)
    conn.transact("ok", "SELECT INBOX")
    first = conn.transact("ok", "FETCH 1 (ENVELOPE BODYSTRUCTURE)").untagged
    assert len(imap_server.factories["imap"].structure_cache) == 1
    assert conn.transact("ok", "FETCH 1 (ENVELOPE BODYSTRUCTURE)").untagged == first
    assert conn.transact("ok", "FETCH 1 (BODY FLAGS)").untagged[0].startswith(b"1 FETCH (BODY ((")
    conn.close()


@threaded
def test_slow_reader_does_not_make_the_server_buffer_the_mailbox(imap_server):
    """FETCH 1:* BODY[] of 40 MB to a client that reads nothing for a while: the server's unsent output stays
    near one batch (it waits for the client), and every message still arrives whole once the client reads."""
    import socket
    import time
    from twisted.internet import reactor
    from twisted.internet.threads import blockingCallFromThread
    from mailstack.imapd import server as imap
    from mailstack.store import maildir
    body = b"Subject: big\r\n\r\n" + (b"x" * 1022 + b"\r\n") * 256   # 256 KiB
    path = str(imap_server.maildir())
    maildir.ensure(path)
    for _ in range(160):
        maildir.deliver(path, body, fsync=False)
    conn = connect(imap_server)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    conn.transact("ok", "EXAMINE INBOX")
    tag = conn.command("FETCH 1:* BODY.PEEK[]")
    factory = imap_server.factories["imap"]
    peak = 0
    for _ in range(30):
        time.sleep(0.05)
        peak = max(peak, blockingCallFromThread(
            reactor, lambda: max(s.output_buffered() for s in factory.sessions)))
    # At most the backlog, one more batch and a message of slack: 2.5 MiB; unbounded it was the whole 40 MB
    # less what the kernel's socket buffers took.
    assert imap.OUTPUT_BACKLOG + fetch.CONTENT_BYTES + len(body) <= 2.5 * 1024 * 1024
    assert peak <= 2.5 * 1024 * 1024, peak
    result = conn.finish(tag)
    assert result.status == "ok" and len(result.untagged) == 160
    assert all(line.endswith(body + b")") for line in result.untagged)
    conn.close()
