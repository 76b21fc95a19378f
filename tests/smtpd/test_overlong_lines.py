"""Overlong input: command lines past line_length_limit, endless lines, long message lines."""

import pytest_twisted

from tests.smtpd.harness import in_thread, raw_session


@pytest_twisted.ensureDeferred
async def test_overlong_command_is_refused_and_session_continues(smtpd):
    """A command line longer than line_length_limit gets 500 5.5.2; the next command works."""
    server = await smtpd()
    payload = b"EHLO c\r\nMAIL FROM:<" + b"a" * 3000 + b"@example.org>\r\nNOOP\r\nQUIT\r\n"
    out = (await in_thread(raw_session, server.port, payload, b"221 ")).decode()
    assert "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye" in out


@pytest_twisted.ensureDeferred
async def test_endless_line_is_not_buffered(smtpd):
    """A megabyte without a line end is dropped as it arrives, answered once when the line ends."""
    server = await smtpd()
    payload = b"EHLO c\r\n" + b"x" * (1024 * 1024) + b"\r\nNOOP\r\nQUIT\r\n"
    out = (await in_thread(raw_session, server.port, payload, b"221 ")).decode()
    assert out.count("500 5.5.2 Error: line too long") == 1
    assert "250 2.0.0 Ok\r\n221 2.0.0 Bye" in out


@pytest_twisted.ensureDeferred
async def test_long_message_lines_are_stored_intact(smtpd):
    """Message lines far longer than line_length_limit are stored byte for byte."""
    server = await smtpd()
    line = b"y" * 300000
    payload = (b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: long\r\n\r\n"
               + line + b"\r\n.\r\nQUIT\r\n")
    out = await in_thread(raw_session, server.port, payload, b"221 ")
    assert b"250 2.0.0 Ok: queued as" in out
    assert server.queued()[0].read_content().endswith(b"\n\n" + line + b"\n")


@pytest_twisted.ensureDeferred
async def test_oversized_header_block_is_bounded(smtpd):
    """A header block past header_size_limit stops being treated as headers but is stored whole."""
    server = await smtpd(header_size_limit="2048", always_add_missing_headers="yes")
    header = b"X-Big: " + b"z" * 5000 + b"\r\n"
    payload = (b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: s\r\n" + header
               + b"\r\nbody\r\n.\r\nQUIT\r\n")
    out = await in_thread(raw_session, server.port, payload, b"221 ")
    assert b"250 2.0.0 Ok: queued as" in out
    content = server.queued()[0].read_content()
    assert b"z" * 5000 in content and content.endswith(b"\nbody\n")
    # Missing headers were added where the header block ended, before the oversized line.
    assert content.index(b"Message-Id: <") < content.index(b"X-Big:")


@pytest_twisted.ensureDeferred
async def test_client_gone_mid_data_leaves_nothing(smtpd):
    """A client that disconnects in the middle of DATA leaves no queue file behind."""
    from tests.smtpd.test_protocol import _until
    server = await smtpd()
    await in_thread(raw_session, server.port, b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\n"
                    b"DATA\r\nSubject: cut\r\n\r\n" + b"partial line\r\n" * 1000, b"354 ")
    await _until(lambda: server.logs.grep("disconnect from") and not server.temp_files())
    assert server.queued() == []


@pytest_twisted.ensureDeferred
async def test_pipelined_flood_while_busy_is_processed_in_order(smtpd):
    """Megabytes pipelined behind a DATA commit are read with flow control and all answered in order."""
    server = await smtpd()
    message = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: f\r\n\r\n" + \
        b"z" * 100000 + b"\r\n.\r\n"
    payload = b"EHLO c\r\n" + message * 30 + b"QUIT\r\n"
    out = await in_thread(raw_session, server.port, payload, b"221 2.0.0 Bye\r\n", 30)
    assert out.count(b"250 2.0.0 Ok: queued as") == 30
    assert len(server.queued()) == 30


@pytest_twisted.ensureDeferred
async def test_megabyte_of_pipelined_commands_is_linear(smtpd):
    """100,000 pipelined NOOPs in one go are answered quickly (no copy of the buffer per line)."""
    import time
    # The junk command limit would otherwise (rightly) slow this client down after 100 NOOPs.
    server = await smtpd(smtpd_junk_command_limit="1000000")
    payload = b"EHLO c\r\n" + b"NOOP\r\n" * 100000 + b"QUIT\r\n"
    started = time.monotonic()
    out = await in_thread(raw_session, server.port, payload, b"221 2.0.0 Bye\r\n", 30)
    assert out.count(b"250 2.0.0 Ok\r\n") == 100000
    assert time.monotonic() - started < 10
