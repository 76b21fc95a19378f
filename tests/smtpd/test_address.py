"""RFC 5321 path parsing, quoting and xtext (mailstack.common.address)."""

import pytest

from mailstack.common.address import (AddressError, parse_params, parse_path, quote_address, split_address,
                                      xtext_decode, xtext_encode)


@pytest.mark.parametrize("text,strict,expected", [
    ("<a@example.org>", False, ("a@example.org", "")),
    (" <a@example.org> SIZE=10 BODY=8BITMIME", False, ("a@example.org", "SIZE=10 BODY=8BITMIME")),
    ("<>", True, ("", "")),
    ("<@r1.example,@r2.example:a@example.org>", True, ("a@example.org", "")),
    ('<"a b"@example.org>', True, ("a b@example.org", "")),
    ('<"a>b"@example.org>', True, ("a>b@example.org", "")),
    ("a@example.org SIZE=1", False, ("a@example.org", "SIZE=1")),
    ("<postmaster>", True, ("postmaster", "")),
    ("<a@[192.0.2.1]>", True, ("a@[192.0.2.1]", "")),
    ("<jörg@exämple.org>", True, ("jörg@exämple.org", "")),
], ids=["plain", "params", "null", "source-route", "quoted", "quoted-bracket", "bare", "postmaster", "literal",
        "utf8"])
def test_parse_path(text, strict, expected):
    """Paths in every RFC 5321 form parse into internal form plus parameters."""
    assert parse_path(text, strict) == expected


@pytest.mark.parametrize("text,strict", [
    ("a@example.org", True), ("<a@example.org", False), ("<a@>", False), ("<a b@example.org>", False),
    ("<a@example.org>x", False), ("", False), ('<"a@example.org>', False), ("<a@exa mple.org>", False),
], ids=["strict-bare", "unclosed", "empty-domain", "space", "garbage", "empty", "open-quote", "space-domain"])
def test_bad_paths(text, strict):
    """Malformed paths raise AddressError."""
    with pytest.raises(AddressError):
        parse_path(text, strict)


def test_params_quoting_and_xtext():
    """ESMTP parameters, external-form quoting and xtext round trips."""
    assert parse_params("size=10 SMTPUTF8") == {"SIZE": "10", "SMTPUTF8": None}
    with pytest.raises(AddressError):
        parse_params("SIZE=1 size=2")
    with pytest.raises(AddressError):
        parse_params("SIZE=")
    assert quote_address("a b@example.org") == '"a b"@example.org'
    assert quote_address("a.b@example.org") == "a.b@example.org"
    assert split_address("a@b@example.org") == ("a@b", "example.org")
    assert xtext_decode("a+2Bb+3Dc") == "a+b=c"
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    with pytest.raises(AddressError):
        xtext_decode("a+2")
