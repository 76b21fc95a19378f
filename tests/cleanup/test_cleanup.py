"""cleanup through the real SMTP server: envelope rewriting, BCC, added headers and the message-id log."""

import pytest_twisted

from tests.smtpd.conftest import smtp_config_dir, smtpd  # noqa: F401  (fixtures)
from tests.smtpd.harness import in_thread, raw_session


def _send(port, sender, rcpts, content):
    lines = b"EHLO c.example\r\nMAIL FROM:<%s>\r\n" % sender.encode()
    for rcpt in rcpts:
        lines += b"RCPT TO:<%s>\r\n" % rcpt.encode()
    return raw_session(port, lines + b"DATA\r\n" + content + b".\r\nQUIT\r\n", b"221 ")


@pytest_twisted.ensureDeferred
async def test_envelope_is_rewritten_before_queueing(smtpd, tmp_path):
    """Sender canonical + masquerade, virtual expansion with orig_to kept, and BCC copies reach the queue file."""
    (tmp_path / "virtual").write_text("team@example.test x@example.test, joe@example.test\n")
    server = await smtpd(sender_canonical_maps="inline:{alice@host.example.org=alice@dept.example.org}",
                         masquerade_domains="example.org", virtual_alias_maps="texthash:%s" % (tmp_path / "virtual"),
                         always_bcc="archive@example.test")
    out = await in_thread(_send, server.port, "alice@host.example.org", ["team@example.test", "joe@example.test"],
                          b"Subject: team\r\n\r\nhello\r\n")
    assert b"250 2.0.0 Ok: queued as" in out
    [queued] = server.queued()
    assert queued.envelope.sender == "alice@example.org"
    rcpts = [(r.recipient.address, r.recipient.original, r.recipient.notify) for r in queued.recipients]
    assert rcpts == [("x@example.test", "team@example.test", ()), ("joe@example.test", "team@example.test", ()),
                     ("archive@example.test", "", ("NEVER",))]


@pytest_twisted.ensureDeferred
async def test_missing_headers_are_added_for_local_clients(smtpd):
    """A loopback client (permit_inet_interfaces) gets From:, Date:, Message-Id: and To: added; the id is logged."""
    server = await smtpd()
    await in_thread(_send, server.port, "alice", ["x@example.test"], b"Subject: bare\r\n\r\nbody\r\n")
    [queued] = server.queued()
    content = queued.read_content().decode()
    head, _, body = content.partition("\n\n")
    assert body == "body\n"
    assert "\nFrom: alice@example.test\n" in head + "\n"
    assert "\nTo: undisclosed-recipients:;" in head
    assert "\nDate: " in head
    message_id = [line for line in head.split("\n") if line.startswith("Message-Id: ")][0][12:]
    assert message_id.endswith(".%s@mail.example.test>" % queued.queue_id)
    assert server.logs.grep("%s: message-id=%s" % (queued.queue_id, message_id))
    assert "\tfor <x@example.test>; " in head


@pytest_twisted.ensureDeferred
async def test_headers_kept_for_remote_clients(smtpd):
    """Clients outside local_header_rewrite_clients get no added headers; an existing Message-ID is logged."""
    server = await smtpd(local_header_rewrite_clients="permit_mynetworks", mynetworks="192.0.2.0/24",
                         relay_domains="remote.example")
    await in_thread(_send, server.port, "a@example.org", ["y@remote.example", "x@example.test"],
                    b"Message-ID: <abc@client.example>\r\nSubject: s\r\n\r\nbody\r\n")
    [queued] = server.queued()
    content = queued.read_content().decode()
    assert "Date:" not in content and "From:" not in content
    assert server.logs.grep("%s: message-id=<abc@client.example>" % queued.queue_id)
    first = content.split("\n")[1]
    assert first.startswith("\tby mail.example.test (mailstack) with ESMTP id %s; " % queued.queue_id)


@pytest_twisted.ensureDeferred
async def test_header_addresses_are_rewritten_for_local_clients(smtpd):
    """From:/To:/Cc: get trivial-rewrite, canonical mapping and masquerading; groups and other fields stay."""
    server = await smtpd(canonical_maps="inline:{@old.example=@new.example}", masquerade_domains="example.test")
    await in_thread(_send, server.port, "alice", ["x@example.test"],
                    b"From: Alice Doe <alice@host.example.test>\r\nTo: bob, \"Carol\" <carol@old.example>\r\n"
                    b"Cc: undisclosed-recipients:;\r\nSubject: bob@old.example\r\n\r\nbody\r\n")
    content = server.queued()[0].read_content().decode()
    assert "\nFrom: Alice Doe <alice@example.test>\n" in content
    assert "\nTo: bob@example.test, Carol <carol@new.example>\n" in content
    assert "\nCc: undisclosed-recipients:;\n" in content
    assert "\nSubject: bob@old.example\n" in content


@pytest_twisted.ensureDeferred
async def test_plain_header_addresses_keep_their_exact_bytes_unless_rewritten(smtpd):
    """A one-address field that rewriting leaves alone is kept byte for byte; one it changes is re-formatted."""
    server = await smtpd(canonical_maps="inline:{@old.example=@new.example}")
    await in_thread(_send, server.port, "alice@example.test", ["x@example.test"],
                    b"From: John Q. Public <jqp@old.example>\r\nTo:   <x@example.test>  \r\n"
                    b"Cc: a.b-c@example.org\r\nReply-To: Odd  Spacing <rt@example.org>\r\n\r\nbody\r\n")
    content = server.queued()[0].read_content().decode()
    assert '\nFrom: "John Q. Public" <jqp@new.example>\n' in content
    assert "\nTo:   <x@example.test>  \n" in content
    assert "\nCc: a.b-c@example.org\n" in content
    assert "\nReply-To: Odd  Spacing <rt@example.org>\n" in content


@pytest_twisted.ensureDeferred
async def test_header_addresses_kept_for_remote_clients(smtpd):
    """Clients outside local_header_rewrite_clients keep their header addresses untouched."""
    server = await smtpd(canonical_maps="inline:{@old.example=@new.example}", mynetworks="192.0.2.0/24",
                         local_header_rewrite_clients="permit_mynetworks")
    await in_thread(_send, server.port, "a@example.org", ["x@example.test"],
                    b"From: bob\r\nTo: <carol@old.example>\r\n\r\nbody\r\n")
    content = server.queued()[0].read_content().decode()
    assert "\nFrom: bob\nTo: <carol@old.example>\n" in content


@pytest_twisted.ensureDeferred
async def test_header_addresses_rewritten_through_a_table_that_does_io(smtpd, tmp_path):
    """canonical_maps in sqlite (looked up in a thread) rewrite From:/To: too, not only the envelope; the body,
    held back meanwhile, follows the rewritten header block intact."""
    import sqlite3
    db = tmp_path / "canonical.sqlite"
    with sqlite3.connect(str(db)) as connection:
        connection.execute("CREATE TABLE canonical (address TEXT, target TEXT)")
        connection.execute("INSERT INTO canonical VALUES ('carol@old.example', 'carol@new.example')")
    cf = tmp_path / "canonical.cf"
    cf.write_text("dbpath = %s\nquery = SELECT target FROM canonical WHERE address = '%%s'\n" % db)
    server = await smtpd(canonical_maps="sqlite:%s" % cf)
    body = b"".join(b"line %d of the body\r\n" % i for i in range(3000))
    await in_thread(_send, server.port, "carol@old.example", ["x@example.test"],
                    b"From: Carol <carol@old.example>\r\nTo: <dave@example.org>\r\nSubject: s\r\n\r\n" + body)
    [queued] = server.queued()
    assert queued.envelope.sender == "carol@new.example"
    content = queued.read_content()
    assert b"\nFrom: Carol <carol@new.example>\nTo: <dave@example.org>\nSubject: s\n" in content
    assert content.endswith(body.replace(b"\r\n", b"\n"))
