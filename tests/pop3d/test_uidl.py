"""pop3_uidl_format: Dovecot's variables and modifiers (pure units)."""

import pytest

from mailstack.pop3d.uidl import UIDLFormat, UIDLFormatError


@pytest.mark.parametrize("pattern, expected", [
    ("%08Xu%08Xv", "0000002a5f5e1000"),
    ("%u.%v", "42.1600000000"),
    ("%g", "0123abcd"),
    ("%f", "1700000000.M1P2Q3.host"),
    ("%4g-%u", "0123-42"),
    ("x%%%u", "x%42"),
    ("%5u", "00042"),
], ids=["dovecot-default", "decimal", "guid", "filename", "truncated-guid", "percent", "width"])
def test_format(pattern, expected):
    """Each variable and modifier expands as Dovecot's var_expand does."""
    fmt = UIDLFormat(pattern)
    assert fmt.format(42, 1600000000, guid="0123abcd", filename="1700000000.M1P2Q3.host") == expected


@pytest.mark.parametrize("pattern, message", [
    ("", "empty"),
    ("%m", "unknown variable %m"),
    ("%Xg", "%X applies"),
    ("%v", "must contain"),
    ("abc%", "not followed"),
], ids=["empty", "md5-unsupported", "hex-on-string", "no-message-part", "dangling-percent"])
def test_bad_formats(pattern, message):
    """A format that cannot give stable distinct UIDLs is rejected with a reason."""
    with pytest.raises(UIDLFormatError, match=message):
        UIDLFormat(pattern)
