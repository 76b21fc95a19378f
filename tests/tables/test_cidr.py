"""cidr tables: IPv4 and IPv6 networks, first match wins, negation, if/endif, errors."""

import pytest

from mailstack.tables.base import TableConfigError
from mailstack.tables.registry import TableContext, open_table


def _table(tmp_path, text):
    path = tmp_path / "client.cidr"
    path.write_text(text)
    return open_table("cidr:%s" % path, TableContext(check_interval=0))


def test_first_match_wins(tmp_path):
    """The cidr_table(5) example: a specific allow before a general deny, both families."""
    table = _table(tmp_path, "192.168.1.1 OK\n192.168.0.0/16 REJECT\n2001:db8::1 OK\n2001:db8::/32 REJECT\n")
    assert table.lookup_now("192.168.1.1") == "OK"
    assert table.lookup_now("192.168.7.9") == "REJECT"
    assert table.lookup_now("192.169.0.1") is None
    assert table.lookup_now("2001:db8::1") == "OK"
    assert table.lookup_now("2001:0db8:0000::0002") == "REJECT"
    assert table.lookup_now("2001:db9::1") is None


def test_brackets_and_catch_all(tmp_path):
    """Patterns may use [], keys may not (as Postfix); 0.0.0.0/0 and ::/0 match all."""
    table = _table(tmp_path, "[10.0.0.0]/8 inside\n0.0.0.0/0 v4\n::/0 v6\n")
    assert table.lookup_now("10.1.2.3") == "inside"
    assert table.lookup_now("[10.1.2.3]") is None
    assert table.lookup_now("8.8.8.8") == "v4"
    assert table.lookup_now("::1") == "v6"


def test_families_never_cross(tmp_path):
    """An IPv4 rule, even negated, never applies to an IPv6 key."""
    table = _table(tmp_path, "!10.0.0.0/8 not-ten\n")
    assert table.lookup_now("11.0.0.1") == "not-ten"
    assert table.lookup_now("10.0.0.1") is None
    assert table.lookup_now("::ffff:11.0.0.1") is None


def test_if_endif(tmp_path):
    """if/endif restricts rules to a network; blocks nest."""
    table = _table(tmp_path, (
        "if 10.0.0.0/8\n"
        "if !10.1.0.0/16\n"
        "10.2.0.0/16 two\n"
        "endif\n"
        "0.0.0.0/0 ten\n"
        "endif\n"
        "0.0.0.0/0 other\n"))
    assert table.lookup_now("10.2.3.4") == "two"
    assert table.lookup_now("10.1.3.4") == "ten"
    assert table.lookup_now("11.0.0.1") == "other"


def test_keys_that_are_not_addresses(tmp_path):
    """A host name or garbage key is simply not found."""
    table = _table(tmp_path, "0.0.0.0/0 all\n")
    assert table.lookup_now("mail.example.com") is None
    assert table.lookup_now("") is None


@pytest.mark.parametrize("line, reason", [
    ("10.0.0.1/8 x", 'non-null host address bits in "10.0.0.1/8", perhaps you should use "10.0.0.0/8" instead'),
    ("10.0.0.0/33 x", "bad net/mask pattern"),
    ("010.0.0.0/8 x", "bad net/mask pattern"),
    ("example.com x", "bad net/mask pattern"),
    ("fe80::%eth0/10 x", "bad net/mask pattern"),
    ("10.0.0.0/8", "no result"),
    ("endif", "endif without matching if"),
    ("if 10.0.0.0/8", "if has no matching endif"),
], ids=["host-bits", "prefix", "octal", "name", "scoped", "no-result", "endif", "no-endif"])
def test_errors_name_file_and_line(tmp_path, line, reason):
    """Bad patterns stop the table with file:line: reason."""
    with pytest.raises(TableConfigError) as info:
        _table(tmp_path, "1.2.3.4 ok\n%s\n" % line)
    assert "client.cidr:2: " in str(info.value)
    assert reason in str(info.value)


def test_inline_cidr():
    """cidr:{ {rule}, {rule} } works without a file."""
    table = open_table("cidr:{ {127.0.0.0/8 local}, {::1 local6} }", TableContext())
    assert table.lookup_now("127.0.0.2") == "local"
    assert table.lookup_now("::1") == "local6"
