"""The ESMTP conversation over loopback with smtplib: extensions, replies, queueing."""

import pytest_twisted

from tests.smtpd.harness import in_thread, smtp_client


def _send_one(port, sender, rcpts, body):
    client = smtp_client(port)
    try:
        features = dict(client.esmtp_features)
        refused = client.sendmail(sender, rcpts, body)
        return features, refused
    finally:
        client.quit()


@pytest_twisted.ensureDeferred
async def test_message_is_queued_with_envelope(smtpd):
    """A message from a trusted client to a local virtual user is queued with its envelope and headers."""
    server = await smtpd(virtual_mailbox_domains="example.test", virtual_mailbox_maps="inline:{joe@example.test=x}")
    features, refused = await in_thread(_send_one, server.port, "alice@example.org", ["joe@example.test"],
                                        b"Subject: hi\r\n\r\nhello\r\n")
    assert refused == {}
    assert "pipelining" in features and "chunking" in features and "8bitmime" in features
    [queued] = server.queued()
    assert queued.envelope.sender == "alice@example.org"
    assert [r.recipient.address for r in queued.recipients] == ["joe@example.test"]
    content = queued.read_content()
    assert content.startswith(b"Received: from client.example.org (unknown [127.0.0.1])\n")
    assert b"Subject: hi\n" in content and content.endswith(b"\nhello\n")
    assert server.logs.grep("%s: client=unknown[127.0.0.1]" % queued.queue_id)


def _transcript(port, payload, until=b"221 2.0.0 Bye\r\n"):
    from tests.smtpd.harness import raw_session
    return raw_session(port, payload, until)


@pytest_twisted.ensureDeferred
async def test_ehlo_advertises_extensions(smtpd):
    """EHLO lists every extension the issue requires, with VRFY off by default."""
    server = await smtpd()
    out = await in_thread(_transcript, server.port, b"EHLO c.example\r\nQUIT\r\n")
    text = out.decode()
    for word in ("PIPELINING", "SIZE 10240000", "ETRN", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME",
                 "DSN", "SMTPUTF8", "CHUNKING"):
        assert "250-%s\r\n" % word in text or "250 %s\r\n" % word in text, word
    assert "VRFY" not in text
    assert text.startswith("220 mail.example.test ESMTP mailstack\r\n")


@pytest_twisted.ensureDeferred
async def test_pipelined_commands_are_answered_in_order_in_one_write(smtpd):
    """A whole pipelined transaction sent in one packet gets every reply, in order."""
    server = await smtpd()
    payload = (b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\n"
               b"RCPT TO:<nobody@elsewhere.example>\r\nDATA\r\nSubject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
    out = await in_thread(_transcript, server.port, payload)
    lines = [line for line in out.decode().split("\r\n") if line and line[3:4] == " "]
    assert [line[:3] for line in lines] == ["220", "250", "250", "250", "250", "354", "250", "250", "221"]
    assert lines[2] == "250 2.1.0 Ok" and lines[3] == "250 2.1.5 Ok"
    assert lines[6].startswith("250 2.0.0 Ok: queued as ")
    assert len(server.queued()) == 1


@pytest_twisted.ensureDeferred
async def test_simple_commands_and_errors(smtpd):
    """NOOP, RSET, HELP, VRFY (disabled), unknown commands and sequencing errors get their reply codes."""
    server = await smtpd()
    payload = (b"NOOP\r\nHELO c.example\r\nRCPT TO:<x@example.test>\r\nDATA\r\nVRFY joe\r\nHELP\r\n"
               b"FROB\r\n\r\nMAIL FROM:<a@example.org>\r\nMAIL FROM:<a@example.org>\r\nDATA\r\nRSET\r\n"
               b"MAIL TO:<x>\r\nMAIL FROM:<a b>\r\nQUIT\r\n")
    out = (await in_thread(_transcript, server.port, payload)).decode()
    replies = [line for line in out.split("\r\n") if line]
    assert replies[1:] == [
        "250 2.0.0 Ok", "250 mail.example.test", "503 5.5.1 Error: need MAIL command",
        "503 5.5.1 Error: need RCPT command", "502 5.5.1 VRFY command is disabled",
        replies[6], "502 5.5.2 Error: command not recognized", "500 5.5.2 Error: bad syntax",
        "250 2.1.0 Ok", "503 5.5.1 Error: nested MAIL command", "503 5.5.1 Error: need RCPT command",
        "250 2.0.0 Ok", "501 5.5.4 Syntax: MAIL FROM:<address>", "501 5.1.7 Bad sender address syntax",
        "221 2.0.0 Bye"]
    assert replies[6].startswith("214 2.0.0 Commands: ")
    await _until(lambda: server.logs.grep("disconnect from unknown[127.0.0.1]"))
    [line] = server.logs.grep("disconnect from unknown[127.0.0.1]")
    assert "noop=1 helo=1 rcpt=0/1 data=0/2 vrfy=0/1 help=1 unknown=0/2 mail=1/4 rset=1 quit=1 commands=6/15" in line


@pytest_twisted.ensureDeferred
async def test_disconnect_log_counts_commands(smtpd):
    """The disconnect line has Postfix's shape: ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5."""
    server = await smtpd()
    await in_thread(_send_one, server.port, "a@example.org", ["x@example.test"], b"Subject: x\r\n\r\nx\r\n")
    await _until(lambda: server.logs.grep("disconnect from"))
    assert server.logs.grep("connect from unknown[127.0.0.1]")
    [line] = server.logs.grep("disconnect from")
    assert line == "disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"


async def _until(predicate, timeout=5.0):
    from twisted.internet import reactor, task
    waited = 0.0
    while not predicate() and waited < timeout:
        await task.deferLater(reactor, 0.01, lambda: None)
        waited += 0.01
    assert predicate()


@pytest_twisted.ensureDeferred
async def test_null_sender_and_dsn_parameters_reach_the_envelope(smtpd):
    """MAIL FROM:<> with RET/ENVID and RCPT NOTIFY/ORCPT are kept in the queued envelope."""
    server = await smtpd()
    payload = (b"EHLO c.example\r\nMAIL FROM:<> RET=HDRS ENVID=abc+2Bdef BODY=8BITMIME SMTPUTF8\r\n"
               b"RCPT TO:<x@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+40example.test\r\n"
               b"DATA\r\nSubject: dsn\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    out = await in_thread(_transcript, server.port, payload)
    assert b"250 2.0.0 Ok: queued as" in out
    [queued] = server.queued()
    env = queued.envelope
    assert (env.sender, env.ret, env.envid, env.body_type, env.smtputf8) == ("", "HDRS", "abc+def", "8BITMIME", True)
    rcpt = queued.recipients[0].recipient
    assert rcpt.notify == ("SUCCESS", "FAILURE") and rcpt.orcpt == "rfc822;x@example.test"


@pytest_twisted.ensureDeferred
async def test_bad_dsn_and_unknown_parameters(smtpd):
    """Malformed NOTIFY/RET and unknown MAIL/RCPT parameters get 501/555."""
    server = await smtpd()
    payload = (b"EHLO c.example\r\nMAIL FROM:<a@example.org> RET=ALL\r\nMAIL FROM:<a@example.org> FOO=1\r\n"
               b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test> NOTIFY=NEVER,SUCCESS\r\n"
               b"RCPT TO:<x@example.test> XYZ\r\nQUIT\r\n")
    out = (await in_thread(_transcript, server.port, payload)).decode()
    assert "501 5.5.4 Bad RET parameter syntax" in out
    assert "555 5.5.4 Unsupported option: FOO" in out
    assert "501 5.5.4 Error: Bad NOTIFY parameter syntax" in out
    assert "555 5.5.4 Unsupported option: XYZ" in out


@pytest_twisted.ensureDeferred
async def test_smtputf8_required_for_unicode_addresses(smtpd):
    """A UTF-8 address needs SMTPUTF8 at MAIL; with it the message is accepted."""
    server = await smtpd()
    payload = ("EHLO c.example\r\nMAIL FROM:<jörg@example.org>\r\nMAIL FROM:<jörg@example.org> SMTPUTF8\r\n"
               "RCPT TO:<x@example.test>\r\nDATA\r\nSubject: ü\r\n\r\nü\r\n.\r\nQUIT\r\n").encode()
    out = (await in_thread(_transcript, server.port, payload)).decode()
    assert "553 5.6.7 Must declare SMTPUTF8 to send unicode address" in out
    assert "250 2.0.0 Ok: queued as" in out
    assert server.queued()[0].envelope.sender == "jörg@example.org"


@pytest_twisted.ensureDeferred
async def test_declared_size_over_limit_is_refused_at_mail(smtpd):
    """SIZE= above message_size_limit gets 552 5.3.4 at MAIL FROM."""
    server = await smtpd(message_size_limit="1000")
    out = (await in_thread(_transcript, server.port,
                           b"EHLO c\r\nMAIL FROM:<a@example.org> SIZE=1001\r\nMAIL FROM:<a@example.org> SIZE=999\r\n"
                           b"QUIT\r\n")).decode()
    assert "250-SIZE 1000\r\n" in out
    assert "552 5.3.4 Message size exceeds fixed limit" in out
    assert "250 2.1.0 Ok" in out


@pytest_twisted.ensureDeferred
async def test_actual_size_over_limit_stores_nothing(smtpd):
    """A message that grows past message_size_limit while streaming gets 552 and leaves no file."""
    server = await smtpd(message_size_limit="2000")
    body = b"".join(b"line %04d of a long message\r\n" % i for i in range(200))
    payload = b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n" + body + \
        b".\r\nNOOP\r\nQUIT\r\n"
    out = (await in_thread(_transcript, server.port, payload)).decode()
    assert "552 5.3.4 Error: message file too big" in out
    assert "250 2.0.0 Ok\r\n221" in out
    assert server.queued() == [] and server.temp_files() == []


@pytest_twisted.ensureDeferred
async def test_bdat_chunks_are_stored_verbatim(smtpd):
    """BDAT chunks (binary, dots and bare LF included) are stored as sent; LAST queues the message."""
    server = await smtpd()
    chunk1 = b"Subject: bdat\r\n\r\n.leading dot\r\n"
    chunk2 = b"a\nb\r\n.\r\nend\r\n"
    payload = (b"EHLO c\r\nMAIL FROM:<a@example.org> BODY=BINARYMIME\r\nRCPT TO:<x@example.test>\r\n"
               b"BDAT %d\r\n%sBDAT %d LAST\r\n%sQUIT\r\n" % (len(chunk1), chunk1, len(chunk2), chunk2))
    out = (await in_thread(_transcript, server.port, payload)).decode()
    assert "250 2.0.0 Ok: %d bytes" % len(chunk1) in out
    assert "250 2.0.0 Ok: queued as" in out
    [queued] = server.queued()
    assert queued.read_content().endswith(b"\n.leading dot\na\nb\n.\nend\n")
    assert queued.envelope.body_type == "BINARYMIME"


@pytest_twisted.ensureDeferred
async def test_bdat_without_recipients_consumes_the_chunk(smtpd):
    """BDAT before RCPT is refused after its bytes are read, so the next command is understood."""
    server = await smtpd()
    out = (await in_thread(_transcript, server.port,
                           b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\nQUIT\r\n")).decode()
    assert "503 5.5.1 Error: need RCPT command\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye" in out


@pytest_twisted.ensureDeferred
async def test_data_after_bdat_and_bad_bdat(smtpd):
    """DATA after BDAT is refused; a BDAT without a size ends the session (its length is unknown)."""
    server = await smtpd()
    out = (await in_thread(_transcript, server.port,
                           b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nBDAT 3\r\nabc"
                           b"DATA\r\nBDAT x\r\n", b"Syntax: BDAT")).decode()
    assert "503 5.5.1 Error: DATA after BDAT" in out
    assert "501 5.5.4 Syntax: BDAT count [LAST]" in out


@pytest_twisted.ensureDeferred
async def test_helo_required_and_strict_envelopes(smtpd):
    """smtpd_helo_required refuses MAIL before HELO; strict_rfc821_envelopes requires <>."""
    server = await smtpd(smtpd_helo_required="yes", strict_rfc821_envelopes="yes")
    out = (await in_thread(_transcript, server.port,
                           b"MAIL FROM:<a@example.org>\r\nHELO c\r\nMAIL FROM:a@example.org\r\n"
                           b"MAIL FROM:<a@example.org>\r\nRCPT TO:x@example.test\r\nQUIT\r\n")).decode()
    assert "503 5.5.1 Error: send HELO/EHLO first" in out
    assert "501 5.1.7 Bad sender address syntax" in out
    assert "501 5.1.3 Bad recipient address syntax" in out


@pytest_twisted.ensureDeferred
async def test_lenient_envelopes_by_default(smtpd):
    """Without strict_rfc821_envelopes a bare address and a source route are accepted."""
    server = await smtpd()
    out = (await in_thread(_transcript, server.port,
                           b"HELO c\r\nMAIL FROM:a@example.org\r\nRCPT TO:<@relay.example:x@example.test>\r\n"
                           b"QUIT\r\n")).decode()
    assert "250 2.1.0 Ok" in out and "250 2.1.5 Ok" in out


@pytest_twisted.ensureDeferred
async def test_recipient_limit(smtpd):
    """Past smtpd_recipient_limit, RCPT gets 452 4.5.3."""
    server = await smtpd(smtpd_recipient_limit="2")
    out = (await in_thread(_transcript, server.port,
                           b"HELO c\r\nMAIL FROM:<a@example.org>\r\n" + b"RCPT TO:<x@example.test>\r\n" * 3 +
                           b"QUIT\r\n")).decode()
    assert out.count("250 2.1.5 Ok") == 2
    assert "452 4.5.3 Error: too many recipients" in out


@pytest_twisted.ensureDeferred
async def test_etrn(smtpd):
    """ETRN makes deferred mail for a fast_flush_domains site due now; other domains get 459."""
    import os
    import time
    from mailstack.queue import Envelope, Recipient
    from mailstack.queue import qfile
    server = await smtpd(relay_domains="relay.example")
    path = os.path.join(server.queue_directory, "deferred", "4jETRNtest0001")
    qfile.write_file(path, b"Subject: later\n\nx\n", Envelope("a@example.org", [Recipient("b@relay.example")]))
    later = time.time() + 3600
    os.utime(path, (later, later))
    out = (await in_thread(_transcript, server.port,
                           b"EHLO c\r\nETRN relay.example\r\nETRN other.example\r\nETRN\r\nQUIT\r\n")).decode()
    assert "250 2.0.0 Queuing started" in out
    assert "459 4.3.0 <other.example>: service unavailable" in out
    assert "500 5.5.4 Syntax: ETRN domain" in out
    assert os.stat(path).st_mtime <= time.time()
    assert server.logs.grep("ETRN relay.example: 1 deferred message(s) due now")


@pytest_twisted.ensureDeferred
async def test_vrfy_when_enabled(smtpd):
    """With disable_vrfy_command = no, VRFY answers 252 for listed and 550 for unknown recipients."""
    server = await smtpd(disable_vrfy_command="no", virtual_mailbox_domains="example.test",
                         virtual_mailbox_maps="inline:{joe@example.test=x}")
    out = (await in_thread(_transcript, server.port,
                           b"EHLO c\r\nVRFY <joe@example.test>\r\nVRFY <nobody@example.test>\r\nQUIT\r\n")).decode()
    assert "250-VRFY" in out
    assert "252 2.0.0 joe@example.test" in out
    assert "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table" in out


@pytest_twisted.ensureDeferred
async def test_forbidden_http_commands_disconnect(smtpd):
    """A web proxy request (POST / HTTP/1.1) ends the session at once."""
    server = await smtpd()
    out = (await in_thread(_transcript, server.port, b"POST / HTTP/1.1\r\nHost: x\r\n", b"Goodbye")).decode()
    assert "221 2.7.0 Error: I can break rules, too. Goodbye." in out


@pytest_twisted.ensureDeferred
async def test_connection_count_limit_per_client(smtpd):
    """A client over smtpd_client_connection_count_limit gets 421 4.7.0 and is disconnected."""
    import socket
    server = await smtpd(smtpd_client_connection_count_limit="1", smtpd_client_event_limit_exceptions="")

    def two():
        first = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            greeting = first.recv(1000)
            second = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            refused = b""
            while True:
                chunk = second.recv(1000)
                if not chunk:
                    break
                refused += chunk
            second.close()
            return greeting, refused
        finally:
            first.close()
    greeting, refused = await in_thread(two)
    assert greeting.startswith(b"220 ")
    assert refused == b"421 4.7.0 mail.example.test Error: too many connections from 127.0.0.1\r\n"
    assert server.logs.grep("Connection concurrency limit exceeded: 2 from unknown[127.0.0.1] for service smtp")


@pytest_twisted.ensureDeferred
async def test_abandoned_transactions_leave_no_queue_files(smtpd):
    """A queue file opened at the first RCPT is removed on RSET and when the client just disconnects."""
    server = await smtpd()
    await in_thread(_transcript, server.port,
                    b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nRSET\r\nQUIT\r\n")
    await in_thread(_transcript, server.port,
                    b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\n", b"250 2.1.5")
    await _until(lambda: not server.temp_files() and len(server.logs.grep("disconnect from")) == 2)
    assert server.queued() == []


@pytest_twisted.ensureDeferred
async def test_junk_count_resets_after_a_delivered_message(smtpd):
    """As in Postfix, the junk command count starts again after mail is queued, so a cached connection is not slowed."""
    server = await smtpd(smtpd_junk_command_limit="2", smtpd_hard_error_limit="1")
    transaction = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: j\r\n\r\nb\r\n.\r\n"
    payload = b"EHLO c.example\r\n" + (b"RSET\r\nNOOP\r\n" + transaction) * 3 + b"QUIT\r\n"
    out = await in_thread(_transcript, server.port, payload)
    assert out.count(b"Ok: queued as ") == 3
    assert b"421 " not in out
    assert len(server.queued()) == 3


@pytest_twisted.ensureDeferred
async def test_hopcount_limit_refuses_mail_loops(smtpd):
    """A message whose Received: headers reach hopcount_limit (ours counted) gets 554 5.4.0 and nothing is queued."""
    server = await smtpd(hopcount_limit="5")

    def message(hops):
        received = b"".join(b"Received: from hop%d.example by x; Mon, 23 Nov 2026 10:00:00 +0000\r\n" % i
                            for i in range(hops))
        return (b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n"
                + received + b"Subject: loop\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    looped = await in_thread(_transcript, server.port, message(4))
    assert b"554 5.4.0 Error: too many hops\r\n" in looped
    assert server.queued() == []
    fine = await in_thread(_transcript, server.port, message(3))
    assert b"Ok: queued as " in fine
    assert len(server.queued()) == 1
