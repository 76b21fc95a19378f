"""The command cursor: atoms, strings, literals, flag lists, sequence sets, dates; reply errors."""

import datetime

import pytest

from mailstack.imapd.errors import Bad, No
from mailstack.imapd.syntax import Cursor, encode_list, quote, resolve


def test_astring_forms():
    """An astring may be an atom (with ']'), a quoted string with escapes, or a literal."""
    cursor = Cursor(b'a]b "q \\"x\\" \\\\" {3}\r\nl i{0+}\r\n')
    assert cursor.astring() == b"a]b"
    cursor.sp()
    assert cursor.astring() == b'q "x" \\'
    cursor.sp()
    assert cursor.astring() == b"l i"
    assert cursor.astring() == b""
    cursor.end()


@pytest.mark.parametrize("data", [b'"open', b'"bad \\x escape"', b"{5}\r\nab", b""],
                         ids=["unterminated", "bad-escape", "truncated-literal", "empty"])
def test_bad_strings(data):
    """Malformed strings raise Bad."""
    with pytest.raises(Bad):
        Cursor(data).astring()


def test_flag_lists():
    """Flag lists hold system flags and keywords; STORE also takes bare flags."""
    assert Cursor(b"(\\Seen $Work)").flag_list() == ["\\Seen", "$Work"]
    assert Cursor(b"()").flag_list() == []
    assert Cursor(b"\\Deleted \\Seen").flag_list(allow_bare=True) == ["\\Deleted", "\\Seen"]
    with pytest.raises(Bad):
        Cursor(b"(\\Seen").flag_list()


def test_sequence_sets():
    """Sequence sets resolve in ascending order, once each, with '*' as the largest and reversed ranges."""
    assert Cursor(b"1:3,5,7:*").seq_set() == [(1, 3), (5, 5), (7, None)]
    assert resolve(Cursor(b"4:2,3,*").seq_set(), 5) == [2, 3, 4, 5]
    assert resolve([(1, None)], 0) == []
    for bad in (b"0", b"1:", b"a", b"1::2"):
        with pytest.raises(Bad):
            Cursor(bad).seq_set()


def test_dates():
    """Search dates are d-Mon-yyyy, quoted or not."""
    assert Cursor(b"1-Feb-2024").date() == datetime.date(2024, 2, 1)
    assert Cursor(b'"15-dec-1999"').date() == datetime.date(1999, 12, 15)
    with pytest.raises(Bad):
        Cursor(b"31-Feb-2024").date()


def test_encoding():
    """Strings are quoted, or sent as literals when they hold CR, LF or 8-bit octets; NIL for None."""
    assert quote("a \"b\"") == b'"a \\"b\\""'
    assert quote("café") == b"{5}\r\ncaf\xc3\xa9"
    assert encode_list([None, 1, "x", ["y"]]) == b'(NIL 1 "x" ("y"))'


def test_error_replies():
    """Errors carry their response code into the reply."""
    assert No("Mailbox doesn't exist.", "TRYCREATE").reply() == b"NO [TRYCREATE] Mailbox doesn't exist."
    assert Bad("Missing argument").reply() == b"BAD Missing argument"
