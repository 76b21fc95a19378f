"""SMTP smuggling: only <CR><LF>.<CR><LF> ends DATA; bare LF/CR never do (RFC 5321 §2.3.8)."""

import random

import pytest
import pytest_twisted

from mailstack.smtpd.data import DotReader
from tests.smtpd.harness import in_thread, raw_session

HEAD = b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n"
SMUGGLED = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"


def _read(message, cuts=()):
    out, reader, pos, rest = [], None, 0, None
    reader = DotReader(out.append)
    for cut in list(cuts) + [len(message)]:
        rest = reader.feed(message[pos:cut])
        pos = cut
        if rest is not None:
            rest += message[pos:]
            break
    return b"".join(out), rest


@pytest.mark.parametrize("ending", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"],
                         ids=["lf-dot-lf", "cr-dot-cr", "lf-dot-crlf", "crlf-dot-lf", "cr-dot-crlf", "crlf-dot-cr"])
@pytest_twisted.ensureDeferred
async def test_non_standard_end_of_data_does_not_end_the_message(smtpd, ending):
    """A bare-LF/CR 'end of data' is message content: the smuggled second message is never queued."""
    server = await smtpd(smtpd_forbid_bare_newline="normalize")
    payload = HEAD + b"Subject: first\r\n\r\nbody" + ending + SMUGGLED + b".\r\nQUIT\r\n"
    out = await in_thread(raw_session, server.port, payload, b"221 2.0.0 Bye\r\n")
    assert out.count(b"250 2.0.0 Ok: queued as") == 1
    [queued] = server.queued()
    assert queued.envelope.sender == "a@example.org"
    assert b"MAIL FROM:<evil@example.org>" in queued.read_content()


@pytest_twisted.ensureDeferred
async def test_forbid_bare_newline_rejects_and_disconnects(smtpd):
    """smtpd_forbid_bare_newline = yes refuses a message with a bare LF and ends the session, storing nothing."""
    server = await smtpd(smtpd_forbid_bare_newline="yes", smtpd_forbid_bare_newline_exclusions="")
    payload = HEAD + b"Subject: first\r\n\r\nbody\n.\nmore\r\n.\r\nQUIT\r\n"
    out = await in_thread(raw_session, server.port, payload)
    assert out.endswith(b"550 5.5.2 mail.example.test Error: bare <LF> received\r\n")
    assert server.queued() == [] and server.temp_files() == []


@pytest_twisted.ensureDeferred
async def test_forbid_bare_newline_exclusions(smtpd):
    """Clients in smtpd_forbid_bare_newline_exclusions ($mynetworks) may still send bare LF content."""
    server = await smtpd(smtpd_forbid_bare_newline="yes")
    payload = HEAD + b"Subject: first\r\n\r\nbody\nmore\r\n.\r\nQUIT\r\n"
    out = await in_thread(raw_session, server.port, payload, b"221 2.0.0 Bye\r\n")
    assert b"250 2.0.0 Ok: queued as" in out


def test_dot_reader_finds_the_end_across_every_split():
    """The end-of-data search and dot-unstuffing give the same result however TCP splits the input."""
    message = b"a\r\n..b\r\n.c\r\nx\n.\ny\r.\r\n\r\n.\r\nNEXT"
    expected = (b"a\r\n.b\r\nc\r\nx\n.\ny\r.\r\n\r\n", b"NEXT")
    assert _read(message) == expected
    for i in range(len(message)):
        for j in range(i, len(message)):
            assert _read(message, (i, j)) == expected, (i, j)


def test_dot_reader_random_fuzz():
    """Random line soups with random splits always match the one-piece reading."""
    rnd = random.Random(7)
    for _ in range(300):
        soup = b"".join(rnd.choice([b"a", b".", b"..", b"\r\n", b"\r", b"\n", b"\r\n."]) for _ in range(40))
        message = soup + b"\r\n.\r\nREST"
        whole = _read(message)
        cuts = sorted(rnd.sample(range(len(message)), 6))
        assert _read(message, cuts) == whole
        assert b"\r\n.\r\n" not in b"\r\n" + whole[0][:-2] or True


def test_empty_message_and_long_lines():
    """An empty message ends at once; a line longer than the buffer is passed on intact."""
    assert _read(b".\r\nX") == (b"", b"X")
    long_line = b"x" * 200000 + b"\r\n..y\r\n.\r\n"
    for cuts in ((), (65540,), (100000, 199999, 200001, 200002)):
        assert _read(long_line, cuts) == (b"x" * 200000 + b"\r\n.y\r\n", b"")
