"""static, inline, fail and unix tables."""

import pwd

import pytest
import pytest_twisted
from twisted.internet import reactor

from mailstack.tables.base import TableConfigError, TableTemporaryError
from mailstack.tables.registry import TableContext, open_table


def test_static_answers_every_key():
    """static:value returns the value for any key; braces keep spaces."""
    assert open_table("static:OK").lookup_now("anything") == "OK"
    assert open_table("static:{ text with spaces }").lookup_now("x") == "text with spaces"


def test_inline_table():
    """inline:{ key=value, { key = text with spaces } } folds keys; a repeated key replaces (Postfix)."""
    table = open_table("inline:{ Example.com=first, { other.example = 550 go away }, example.com=OK }")
    assert table.lookup_now("EXAMPLE.COM") == "OK"
    assert table.lookup_now("other.example") == "550 go away"
    assert table.lookup_now("third") is None
    assert table.items() == [("example.com", "OK"), ("other.example", "550 go away")]


@pytest.mark.parametrize("spec, reason", [
    ("inline:{ novalue }", "need name=value"),
    ("inline:a=b", "expected {...}"),
    ("inline:{ a=b", "expected {...}"),
    ("inline:{ {a=b }", "missing '}'"),
], ids=["no-equals", "no-braces", "unclosed", "nested-unclosed"])
def test_inline_errors(spec, reason):
    """Inline syntax errors name the table."""
    with pytest.raises(TableConfigError, match=reason):
        open_table(spec)


def test_fail_never_answers_not_found():
    """fail: fails every lookup temporarily, synchronously and as a Deferred."""
    table = open_table("fail:maintenance")
    with pytest.raises(TableTemporaryError, match="fail:maintenance"):
        table.lookup_now("x")
    failures = []
    table.lookup("x").addErrback(failures.append)
    assert failures[0].check(TableTemporaryError)


@pytest_twisted.inlineCallbacks
def test_unix_passwd_in_thread_pool():
    """unix:passwd.byname answers from the system's users in the reactor's thread pool."""
    table = open_table("unix:passwd.byname", TableContext(reactor=reactor))
    entry = pwd.getpwuid(0)
    value = yield table.lookup(entry.pw_name.upper())
    assert value.split(":")[0] == entry.pw_name and value.split(":")[2] == "0"
    missing = yield table.lookup("no-such-user-mailstack")
    assert missing is None


def test_unix_group_and_unknown_map():
    """unix:group.byname answers groups; other unix maps are configuration errors."""
    assert open_table("unix:group.byname").lookup_blocking("root").startswith("root:")
    with pytest.raises(TableConfigError, match="known: passwd.byname, group.byname"):
        open_table("unix:hosts.byname")
