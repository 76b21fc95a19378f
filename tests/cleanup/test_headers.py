"""The streaming header splitter (mailstack.cleanup.headers)."""

import pytest

from mailstack.cleanup.headers import HeaderStream, parse_fields


def _run(message, limit=1000, cuts=()):
    out, seen = [], []

    def on_headers(fields):
        seen.append(fields)
        return b"X-Added: yes\r\n"
    stream = HeaderStream(out.append, limit, on_headers)
    pos = 0
    for cut in list(cuts) + [len(message)]:
        stream.feed(message[pos:cut])
        pos = cut
    stream.close()
    return b"".join(out), seen[0]


@pytest.mark.parametrize("cuts", [(), (1,), (5, 17), tuple(range(1, 40))], ids=["whole", "one", "two", "bytewise"])
def test_headers_found_across_splits(cuts):
    """The header block ends at the empty line however the content is split; added headers go after it."""
    message = b"Subject: a\r\nTo: b\r\n folded\r\n\r\nbody\r\n"
    out, fields = _run(message, cuts=cuts)
    assert out == b"Subject: a\r\nTo: b\r\n folded\r\nX-Added: yes\r\n\r\nbody\r\n"
    assert fields == [("subject", "a"), ("to", "b folded")]


def test_non_header_line_ends_the_header_block():
    """A line that is not a header field starts the body (no empty line needed)."""
    out, fields = _run(b"Subject: a\r\nthis is body\r\n")
    assert out == b"Subject: a\r\nX-Added: yes\r\nthis is body\r\n"


def test_header_only_message_and_limit():
    """A message without body gets its headers closed; past the limit the rest passes as body."""
    out, fields = _run(b"Subject: a")
    assert out == b"Subject: a\r\nX-Added: yes\r\n"
    out, fields = _run(b"Subject: a\r\nX-Long: " + b"z" * 3000 + b"\r\n\r\nb\r\n", limit=1024)
    assert out.startswith(b"Subject: a\r\nX-Added: yes\r\nX-Long: zzz")
    assert fields == [("subject", "a")]


def test_parse_fields_unfolds():
    """parse_fields lower-cases names and unfolds values."""
    assert parse_fields(b"Message-ID:\r\n <x@y>\r\nFrom: a\r\n") == [("message-id", "<x@y>"), ("from", "a")]
