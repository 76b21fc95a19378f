"""Byte-stuffing, CRLF conversion, octet counts and TOP cuts (pure units)."""

import io

import pytest

from mailstack.pop3d import transfer
from mailstack.store import maildir

CASES = [
    (b"", b".\r\n"),
    (b"a\n", b"a\r\n.\r\n"),
    (b"a", b"a\r\n.\r\n"),
    (b".\n", b"..\r\n.\r\n"),
    (b"x\n.\n..y\n", b"x\r\n..\r\n...y\r\n.\r\n"),
    (b"crlf\r\nkept\r\n", b"crlf\r\nkept\r\n.\r\n"),
    (b"bare\rcr\n", b"bare\rcr\r\n.\r\n"),
    (b"end\r", b"end\r\r\n.\r\n"),
    (b"mixed\r\n.dot\nlf\n", b"mixed\r\n..dot\r\nlf\r\n.\r\n"),
]


@pytest.mark.parametrize("stored, wire", CASES, ids=[
    "empty", "one-line", "no-final-newline", "lone-dot", "dots", "crlf", "bare-cr", "trailing-cr", "mixed"])
def test_stuff_whole_message(stored, wire):
    """A stored message becomes CRLF lines with dots doubled and the terminator."""
    assert transfer.stuff(stored) == wire


@pytest.mark.parametrize("stored, wire", CASES[1:], ids=[
    "one-line", "no-final-newline", "lone-dot", "dots", "crlf", "bare-cr", "trailing-cr", "mixed"])
def test_stuff_byte_by_byte_matches_whole(stored, wire):
    """Feeding a message one byte at a time gives the same bytes (chunk boundaries are safe)."""
    stuffer = transfer.Stuffer()
    out = b"".join(stuffer.feed(stored[i:i + 1]) for i in range(len(stored))) + stuffer.finish()
    assert out == wire


@pytest.mark.parametrize("stored", [c[0] for c in CASES] + [b"Subject: x\n\n" + b"line\n" * 1000],
                         ids=[str(i) for i in range(len(CASES) + 1)])
def test_octets_equal_virtual_size(stored):
    """The octets sent (without stuffing) equal the store's ,W= size."""
    stuffer = transfer.Stuffer()
    wire = stuffer.feed(stored) + stuffer.finish()
    body = wire[:-3]
    unstuffed = body.replace(b"\r\n..", b"\r\n.")
    if unstuffed.startswith(b".."):
        unstuffed = unstuffed[1:]
    expected = maildir.virtual_size(stored)
    if stored and not stored.endswith(b"\n"):
        expected_wire = expected + 2  # the CRLF added to end the last line is not counted
    else:
        expected_wire = expected
    assert stuffer.octets == expected
    assert len(unstuffed) == (expected_wire if stored else 0)


def test_large_message_chunks(tmp_path):
    """A multi-chunk message with dots at chunk starts streams correctly."""
    line = b"." + b"x" * (transfer.CHUNK - 2) + b"\n"   # each chunk starts with a dot line
    stored = line * 3 + b"\r" + b"\n.end\n"
    stuffer = transfer.Stuffer()
    handle = io.BytesIO(stored)
    out = b""
    while True:
        chunk = handle.read(transfer.CHUNK)
        if not chunk:
            break
        out += stuffer.feed(chunk)
    out += stuffer.finish()
    assert out == transfer.stuff(stored)
    assert out.count(b"\r\n..") == 3 and out.startswith(b"..")
    assert stuffer.octets == maildir.virtual_size(stored)


MESSAGE = b"From: a@b\nSubject: t\n\nbody 1\n.dotted 2\nline 3\n"


@pytest.mark.parametrize("lines, wire", [
    (0, b"From: a@b\r\nSubject: t\r\n\r\n.\r\n"),
    (1, b"From: a@b\r\nSubject: t\r\n\r\nbody 1\r\n.\r\n"),
    (2, b"From: a@b\r\nSubject: t\r\n\r\nbody 1\r\n..dotted 2\r\n.\r\n"),
    (10, b"From: a@b\r\nSubject: t\r\n\r\nbody 1\r\n..dotted 2\r\nline 3\r\n.\r\n"),
], ids=["zero", "one", "two", "more-than-there-are"])
def test_top_lines(lines, wire):
    """TOP gives the header, the blank line and N body lines, stuffed."""
    assert transfer.top_lines(io.BytesIO(MESSAGE), lines) == wire


def test_top_without_body_and_crlf_file():
    """TOP on a header-only message gives it all; a CRLF file is cut the same way."""
    assert transfer.top_lines(io.BytesIO(b"Subject: only\n"), 5) == b"Subject: only\r\n.\r\n"
    crlf = MESSAGE.replace(b"\n", b"\r\n")
    assert transfer.top_lines(io.BytesIO(crlf), 1) == transfer.top_lines(io.BytesIO(MESSAGE), 1)


def test_top_reads_only_what_it_needs():
    """TOP 0 on a huge message stops reading after the header."""
    handle = io.BytesIO(b"Subject: big\n\n" + (b"y" * 79 + b"\n") * (10 * transfer.CHUNK // 80))
    assert transfer.top_lines(handle, 0) == b"Subject: big\r\n\r\n.\r\n"
    assert handle.tell() == transfer.CHUNK
