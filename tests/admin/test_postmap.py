"""mailstack postmap and newaliases: build, query (-q, -q -), dump (-s), delete (-d), add (-i)."""

import io
import os
import sys

import pytest

from tests.conftest import run_cli


@pytest.fixture
def access(tmp_path, monkeypatch):
    """A postmap source file in the current directory."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "access"
    path.write_text("# clients\n1.2.3   REJECT\n1.2.3.4 OK\nExample.COM  550 go\n  away\n")
    return path


def _cli(tmp_path, *argv):
    return run_cli("-c", tmp_path / "etc", *argv)


def test_build_and_query(tmp_path, access):
    """postmap NAME builds NAME.db; -q prints the value, folding the key."""
    status, out, err = _cli(tmp_path, "postmap", "access")
    assert (status, out, err) == (0, "", "")
    assert (tmp_path / "access.db").exists()
    assert _cli(tmp_path, "postmap", "-q", "EXAMPLE.com", "access")[:2] == (0, "550 go  away\n")
    assert _cli(tmp_path, "postmap", "-q", "1.2.3.4", "hash:access")[:2] == (0, "OK\n")


def test_query_not_found_exits_1(tmp_path, access):
    """-q for a missing key prints nothing and exits 1, as Postfix."""
    _cli(tmp_path, "postmap", "access")
    assert _cli(tmp_path, "postmap", "-q", "1.2.4", "access") == (1, "", "")


def test_query_searches_tables_in_order(tmp_path, access):
    """-q over several tables prints the first value found."""
    _cli(tmp_path, "postmap", "access")
    status, out, _ = _cli(tmp_path, "postmap", "-q", "1.2.3", "inline:{1.2.3=first}", "access")
    assert (status, out) == (0, "first\n")
    status, out, _ = _cli(tmp_path, "postmap", "-q", "1.2.3", "inline:{x=y}", "access")
    assert (status, out) == (0, "REJECT\n")


def test_query_missing_index_says_so(tmp_path, access):
    """-q on a table that was never built names the missing file and how to build it."""
    status, out, err = _cli(tmp_path, "postmap", "-q", "x", "access")
    assert status == 1 and out == ""
    assert "access.db: No such file or directory" in err and "mailstack postmap" in err


def test_query_any_type(tmp_path, access):
    """-q works on every table type: regexp, cidr, texthash, static, fail."""
    (tmp_path / "re").write_text("/^(.*)@example\\.com$/ user $1\n")
    (tmp_path / "nets").write_text("10.0.0.0/8 inside\n")
    assert _cli(tmp_path, "postmap", "-q", "Bob@example.com", "regexp:re")[:2] == (0, "user Bob\n")
    assert _cli(tmp_path, "postmap", "-q", "10.9.8.7", "cidr:nets")[:2] == (0, "inside\n")
    assert _cli(tmp_path, "postmap", "-q", "1.2.3.4", "texthash:access")[:2] == (0, "OK\n")
    assert _cli(tmp_path, "postmap", "-q", "x", "static:yes")[:2] == (0, "yes\n")
    status, _, err = _cli(tmp_path, "postmap", "-q", "x", "fail:x")
    assert status == 75 and "fail:x" in err


def test_query_keys_from_stdin(tmp_path, access, monkeypatch):
    """-q - reads keys from standard input and prints key<TAB>value for each one found."""
    _cli(tmp_path, "postmap", "access")
    monkeypatch.setattr(sys, "stdin", io.StringIO("1.2.3\nnone\n1.2.3.4\n"))
    assert _cli(tmp_path, "postmap", "-q", "-", "access")[:2] == (0, "1.2.3\tREJECT\n1.2.3.4\tOK\n")


def test_dump(tmp_path, access):
    """-s lists every entry in key order."""
    _cli(tmp_path, "postmap", "access")
    status, out, _ = _cli(tmp_path, "postmap", "-s", "access")
    assert status == 0
    assert out == "1.2.3\tREJECT\n1.2.3.4\tOK\nexample.com\t550 go  away\n"


def test_delete_and_add(tmp_path, access, monkeypatch):
    """-d removes a key from the index (exit 1 if absent); -i adds key value lines from stdin."""
    _cli(tmp_path, "postmap", "access")
    assert _cli(tmp_path, "postmap", "-d", "1.2.3", "access")[0] == 0
    assert _cli(tmp_path, "postmap", "-d", "1.2.3", "access")[0] == 1
    assert _cli(tmp_path, "postmap", "-q", "1.2.3", "access")[0] == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO("New.Key value here\n"))
    assert _cli(tmp_path, "postmap", "-i", "access")[0] == 0
    assert _cli(tmp_path, "postmap", "-q", "new.key", "access")[:2] == (0, "value here\n")
    assert _cli(tmp_path, "postmap", "-q", "1.2.3.4", "access")[:2] == (0, "OK\n")


def test_error_stops_build_and_keeps_old_index(tmp_path, access):
    """A syntax error names file:line and leaves the previous index in place."""
    _cli(tmp_path, "postmap", "access")
    before = (tmp_path / "access.db").read_bytes()
    access.write_text("good OK\nbad\n")
    status, _, err = _cli(tmp_path, "postmap", "access")
    assert status == 1
    assert "access:2: expected format: key whitespace value" in err
    assert (tmp_path / "access.db").read_bytes() == before


def test_duplicate_warning(tmp_path, access):
    """Duplicate keys are reported and the first one is kept."""
    access.write_text("a 1\na 2\n")
    status, _, err = _cli(tmp_path, "postmap", "access")
    assert status == 0 and 'access:2: duplicate entry: "a"' in err
    assert _cli(tmp_path, "postmap", "-q", "a", "access")[1] == "1\n"


def test_other_types_are_checked_not_built(tmp_path, access):
    """postmap on a regexp file checks it; an error names file:line."""
    (tmp_path / "re").write_text("/a/ ok\n/b/q y\n")
    status, _, err = _cli(tmp_path, "postmap", "regexp:re")
    assert status == 1 and 're:2: unknown regexp option "q"' in err


def test_unknown_type(tmp_path, access):
    """An unknown table type is reported with the known ones."""
    status, _, err = _cli(tmp_path, "postmap", "btree:access")
    assert status == 1 and "unsupported dictionary type: btree" in err and "hash" in err


def test_newaliases(config_dir):
    """newaliases builds $alias_database from aliases(5) syntax; postmap -q reads it."""
    aliases = config_dir / "aliases"
    aliases.write_text("# system aliases\nPostmaster: root\nstaff: alice,\n  bob\n")
    status, _, err = run_cli("-c", config_dir, "newaliases")
    assert status == 0, err
    assert os.path.exists(str(aliases) + ".db")
    status, out, _ = run_cli("-c", config_dir, "postmap", "-q", "postmaster", "hash:%s" % aliases)
    assert (status, out) == (0, "root\n")
    assert run_cli("-c", config_dir, "postmap", "-q", "staff", "hash:%s" % aliases)[1] == "alice, bob\n"


def test_newaliases_error(config_dir):
    """An alias file error names file:line and fails."""
    (config_dir / "aliases").write_text("root admin\n")
    status, _, err = run_cli("-c", config_dir, "newaliases")
    assert status == 1 and "aliases:1: need name:value pair" in err


def test_query_sqlite(tmp_path, access):
    """-q queries an sqlite table on the calling thread."""
    import sqlite3
    conn = sqlite3.connect(str(tmp_path / "db.sqlite"))
    conn.execute("CREATE TABLE t (k TEXT, v TEXT)")
    conn.execute("INSERT INTO t VALUES ('user@example.com', 'mailbox/user')")
    conn.commit()
    conn.close()
    (tmp_path / "t.cf").write_text("dbpath = %s\nquery = SELECT v FROM t WHERE k = '%%s'\n" % (tmp_path / "db.sqlite"))
    assert _cli(tmp_path, "postmap", "-q", "User@Example.com", "sqlite:t.cf")[:2] == (0, "mailbox/user\n")
    assert _cli(tmp_path, "postmap", "-q", "other@example.com", "sqlite:t.cf")[:2] == (1, "")
