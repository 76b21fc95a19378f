"""hash and texthash tables: source syntax, the index file, reopening on change, speed."""

import os
import time

import pytest
from twisted.internet import task

from mailstack.tables import hash as hashtable
from mailstack.tables.base import NotInMemoryError, TableConfigError, TableTemporaryError, logical_lines
from mailstack.tables.registry import TableContext, open_table


def _context(clock=None, interval=0):
    return TableContext(reactor=clock, base_directory=None, check_interval=interval)


def test_logical_lines_join_continuations_and_skip_comments():
    """Continuation lines keep their leading white space; comments and blank lines go."""
    text = "# comment\n\nkey value\n  more\n# inside\n\tend\nother x\n"
    assert list(logical_lines(text, "f")) == [(3, "key value  more\tend"), (7, "other x")]


def test_logical_lines_continuation_without_line_is_an_error():
    """A first line that starts with white space names file:line."""
    with pytest.raises(TableConfigError, match="^f:2: continuation line"):
        list(logical_lines("# x\n  orphan\n", "f"))


def test_parse_source_folds_keys_and_keeps_first_duplicate():
    """Keys are lower-cased, values kept, the first of two duplicates wins with a warning."""
    warnings = []
    entries = hashtable.parse_source("User@Example.COM  Value With Case  \nuser@example.com other\n",
                                     "virtual", warnings.append)
    assert entries == {"user@example.com": "Value With Case"}
    assert warnings == ['virtual:2: duplicate entry: "user@example.com" (the first one is used)']


def test_parse_source_missing_value_is_an_error():
    """A key without a value stops the build with file:line: reason."""
    with pytest.raises(TableConfigError, match="^access:2: expected format: key whitespace value$"):
        hashtable.parse_source("a OK\nlonely\n", "access")


def test_parse_source_warns_about_alias_syntax():
    """A 'key: value' record is accepted with a hint that it looks like an alias file."""
    warnings = []
    assert hashtable.parse_source("root: admin\n", "t", warnings.append) == {"root:": "admin"}
    assert "is this an alias file?" in warnings[0]


def test_parse_aliases():
    """aliases(5): name: value, continuation, quoted names, lower-cased keys, white space collapsed."""
    text = ('# aliases\nPostmaster: root\nstaff: alice,\n  bob,   "|/usr/bin/x"\n'
            '"with space": carol\n')
    assert hashtable.parse_aliases(text, "aliases") == {
        "postmaster": "root", "staff": 'alice, bob, "|/usr/bin/x"', "with space": "carol"}


@pytest.mark.parametrize("line, reason", [
    ("no colon here", "need name:value pair"),
    ("empty:", "alias empty has no value"),
    ('"open: x', 'expected "name": value'),
], ids=["no-colon", "no-value", "unclosed-quote"])
def test_parse_aliases_errors(line, reason):
    """Alias syntax errors name file:line: reason."""
    with pytest.raises(TableConfigError, match="^aliases:2: " + reason):
        hashtable.parse_aliases("ok: x\n" + line + "\n", "aliases")


def test_index_round_trip(tmp_path):
    """write_index then IndexFile finds every key, misses others, lists in key order."""
    path = str(tmp_path / "t.db")
    entries = {"b": "2", "a": "1", "ünï": "cödé", "": "empty key", "c" * 300: "long"}
    hashtable.write_index(path, entries)
    index = hashtable.IndexFile(path)
    try:
        for key, value in entries.items():
            assert index.get(key) == value
        assert index.get("zz") is None and index.get("0") is None
        assert [k for k, _ in index.items()] == sorted(entries, key=lambda k: k.encode())
    finally:
        index.close()


def test_empty_index(tmp_path):
    """An index without entries answers None."""
    path = str(tmp_path / "e.db")
    hashtable.write_index(path, {})
    assert hashtable.read_index(path) == {}


def test_not_an_index(tmp_path):
    """A file that is not an index is refused with a hint to rebuild."""
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not an index at all")
    with pytest.raises(TableConfigError, match="not a mailstack table index"):
        hashtable.IndexFile(str(path))


def _build(path, text):
    hashtable.write_index(str(path) + ".db", hashtable.parse_source(text, str(path)))


def test_hash_lookup_folds_key(tmp_path):
    """A hash table lower-cases the key and answers synchronously."""
    source = tmp_path / "access"
    source.write_text("example.com REJECT\n1.2.3 OK\n")
    _build(source, source.read_text())
    table = open_table("hash:%s" % source, _context())
    assert table.lookup_now("EXAMPLE.com") == "REJECT"
    assert table.lookup_now("1.2.3.4") is None
    d = table.lookup("1.2.3")
    assert d.called and d.result == "OK"


def test_hash_reopens_when_index_changes(tmp_path):
    """A rebuilt index is seen after the check interval of the injected clock."""
    clock = task.Clock()
    source = tmp_path / "virtual"
    _build(source, "a@x b@y\n")
    table = open_table("hash:%s" % source, _context(clock, interval=1.0))
    assert table.lookup_now("a@x") == "b@y"
    _build(source, "a@x c@z\n")
    assert table.lookup_now("a@x") == "b@y"  # not checked yet
    clock.advance(1.0)
    assert table.lookup_now("a@x") == "c@z"


def test_hash_missing_index_fails_temporarily(tmp_path):
    """Without name.db, lookups fail temporarily (never 'not found') and say how to build it."""
    source = tmp_path / "access"
    source.write_text("a b\n")
    table = open_table("hash:%s" % source, _context())
    with pytest.raises(TableTemporaryError, match=r"access.db: No such file.*mailstack postmap"):
        table.lookup_now("a")
    failure = []
    table.lookup("a").addErrback(failure.append)
    assert failure and failure[0].check(TableTemporaryError)
    _build(source, "a b\n")
    assert table.lookup_now("a") == "b"


def test_hash_strict_open_of_missing_index(tmp_path):
    """strict opening (postmap -q) refuses a missing index at once."""
    with pytest.raises(TableConfigError, match="cannot open"):
        open_table("hash:%s" % (tmp_path / "none"), _context(), strict=True)


def test_texthash_reloads_on_change(tmp_path):
    """texthash reads the source itself and re-reads it when it changes."""
    source = tmp_path / "t"
    source.write_text("key one\n")
    table = open_table("texthash:%s" % source, _context())
    assert table.lookup_now("KEY") == "one"
    source.write_text("key two, and more\n")
    os.utime(source, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert table.lookup_now("key") == "two, and more"


def test_texthash_broken_file_fails_temporarily_after_reload(tmp_path):
    """An edit that breaks the file makes lookups fail temporarily, naming file:line."""
    source = tmp_path / "t"
    source.write_text("key one\n")
    table = open_table("texthash:%s" % source, _context())
    source.write_text("key one\nbroken\n")
    os.utime(source, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    with pytest.raises(TableTemporaryError, match=r"t:2: expected format"):
        table.lookup_now("key")


def test_texthash_syntax_error_at_open(tmp_path):
    """A syntax error found at open is a configuration error."""
    source = tmp_path / "t"
    source.write_text("lonely\n")
    with pytest.raises(TableConfigError, match=r"t:1: expected format"):
        open_table("texthash:%s" % source, _context())


def test_hash_lookup_speed(tmp_path):
    """A lookup in an open 20,000-entry hash table takes microseconds."""
    source = tmp_path / "big"
    hashtable.write_index(str(source) + ".db", {"user%d@example.com" % i: "v%d" % i for i in range(20000)})
    table = open_table("hash:%s" % source, _context(task.Clock(), interval=1.0))
    keys = ["user%d@example.com" % i for i in range(0, 20000, 7)] + ["nobody@example.com"] * 1000
    start = time.perf_counter()
    for key in keys:
        table.lookup_now(key)
    per_lookup = (time.perf_counter() - start) / len(keys)
    assert table.lookup_now("user19999@example.com") == "v19999"
    assert per_lookup < 50e-6, per_lookup


def test_lookup_now_refuses_io_tables():
    """lookup_now raises for table types whose lookups do I/O."""
    table = open_table("unix:passwd.byname", _context())
    with pytest.raises(NotInMemoryError):
        table.lookup_now("root")


def test_log_lines_for_missing_and_reloaded_tables(tmp_path):
    """A missing index and a reload are logged in maillog style under mailstack/tables."""
    from twisted.logger import capturedLogs

    from mailstack.common.maillog import format_line
    source = tmp_path / "virtual"
    with capturedLogs() as events:
        table = open_table("hash:%s" % source, _context())
        _build(source, "a b\n")
        table.lookup_now("a")
    lines = [format_line(event, "mail", pid=7) for event in events]
    assert lines[0].endswith("mail mailstack/tables[7]: warning: table hash:%s: cannot open %s.db: "
                             "No such file or directory (build it with 'mailstack postmap %s')"
                             % (source, source, source))
    assert lines[1].endswith("mail mailstack/tables[7]: table hash:%s: reloaded after a change" % source)
