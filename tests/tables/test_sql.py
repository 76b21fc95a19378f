"""sqlite tables: sqlite_table(5) configuration, %-expansions, result_format, threads, failures."""

import sqlite3

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from mailstack.tables.base import TableConfigError, TableTemporaryError
from mailstack.tables.registry import TableContext, open_table


@pytest.fixture
def database(tmp_path):
    """An SQLite database of aliases and domains."""
    path = tmp_path / "mail.sqlite"
    conn = sqlite3.connect(str(path))
    conn.executescript("""
        PRAGMA synchronous = OFF;
        CREATE TABLE alias (address TEXT, goto TEXT);
        INSERT INTO alias VALUES ('bob@example.com', 'robert@example.net');
        INSERT INTO alias VALUES ('list@example.com', 'a@x.example');
        INSERT INTO alias VALUES ('list@example.com', 'b@x.example');
        INSERT INTO alias VALUES ('list@example.com', NULL);
        INSERT INTO alias VALUES ('o''brien@example.com', 'ob@example.net');
        CREATE TABLE domain (name TEXT, tld TEXT);
        INSERT INTO domain VALUES ('example', 'com');
    """)
    conn.commit()
    conn.close()
    return path


def _table(tmp_path, database, body, reactor_=None):
    cf = tmp_path / "t.cf"
    cf.write_text("dbpath = %s\n%s" % (database, body))
    return open_table("sqlite:%s" % cf, TableContext(reactor=reactor_))


def test_query_with_whole_key(tmp_path, database):
    """%s is the whole key, lower-cased; several rows are joined with commas, NULLs skipped."""
    table = _table(tmp_path, database, "query = SELECT goto FROM alias WHERE address='%s'\n")
    assert table.lookup_blocking("Bob@Example.COM") == "robert@example.net"
    assert table.lookup_blocking("list@example.com") == "a@x.example,b@x.example"
    assert table.lookup_blocking("nobody@example.com") is None


def test_quotes_are_escaped(tmp_path, database):
    """A quote in the key is doubled, so it is data, not SQL."""
    table = _table(tmp_path, database, "query = SELECT goto FROM alias WHERE address='%s'\n")
    assert table.lookup_blocking("o'brien@example.com") == "ob@example.net"
    assert table.lookup_blocking("x' OR '1'='1") is None


def test_user_domain_and_label_expansions(tmp_path, database):
    """%u, %d and %1/%2 split the key; keys lacking the part run no query."""
    table = _table(tmp_path, database,
                   "query = SELECT '%u' || '|' || '%d' || '|' || name || '.' || tld FROM domain "
                   "WHERE name='%2' AND tld='%1'\n")
    assert table.lookup_blocking("bob@example.com") == "bob|example.com|example.com"
    assert table.lookup_blocking("bob") is None  # %d needs a domain
    assert table.lookup_blocking("@example.com") is None  # %u needs a local part
    assert table.lookup_blocking("bob@com") is None  # %2 needs two labels


def test_result_format_and_domain_restriction(tmp_path, database):
    """result_format shapes each value; domain limits lookups to user@listed-domain keys."""
    table = _table(tmp_path, database,
                   "query = SELECT goto FROM alias WHERE address='%s'\n"
                   "result_format = %u at %d for %U\n"
                   "domain = example.com\n")
    assert table.lookup_blocking("bob@example.com") == "robert at example.net for bob"
    assert table.lookup_blocking("bob@other.example") is None
    assert table.lookup_blocking("example.com") is None


def test_expansion_limit(tmp_path, database):
    """More rows than expansion_limit is a temporary error, not a partial answer."""
    table = _table(tmp_path, database, "query = SELECT goto FROM alias WHERE address='%s'\nexpansion_limit = 1\n")
    assert table.lookup_blocking("bob@example.com") == "robert@example.net"
    with pytest.raises(TableTemporaryError, match="expansion limit"):
        table.lookup_blocking("list@example.com")


def test_legacy_query_form(tmp_path, database):
    """table/select_field/where_field/additional_conditions build the query."""
    table = _table(tmp_path, database, "table = alias\nselect_field = goto\nwhere_field = address\n"
                                       "additional_conditions = AND goto LIKE 'r%'\n")
    assert table.lookup_blocking("bob@example.com") == "robert@example.net"


@pytest.mark.parametrize("body, reason", [
    ("", "query is not set"),
    ("query = SELECT '%x'\n", "invalid %x"),
    ("query = x\nfoo = bar\n", "unknown parameter foo"),
    ("query = x\nexpansion_limit = many\n", "bad expansion_limit"),
], ids=["no-query", "bad-directive", "unknown", "limit"])
def test_configuration_errors(tmp_path, database, body, reason):
    """Configuration mistakes are reported when the table is opened."""
    with pytest.raises(TableConfigError, match=reason):
        _table(tmp_path, database, body)


def test_missing_database_fails_temporarily(tmp_path):
    """A database that cannot be opened is a temporary failure, never 'not found'."""
    table = _table(tmp_path, tmp_path / "missing.sqlite", "query = SELECT 1 WHERE '%s'='x'\n")
    with pytest.raises(TableTemporaryError, match="query failed"):
        table.lookup_blocking("x")


@pytest_twisted.inlineCallbacks
def test_lookups_run_in_threads(tmp_path, database):
    """lookup() runs the query in the reactor's thread pool and fires with the value."""
    table = _table(tmp_path, database, "query = SELECT goto FROM alias WHERE address='%s'\n", reactor)
    assert not table.synchronous
    values = yield defer.gatherResults([table.lookup(k) for k in ["bob@example.com", "x@y"] * 5])
    assert values == ["robert@example.net", None] * 5
    table.close()


@pytest_twisted.inlineCallbacks
def test_thread_failure_is_temporary(tmp_path):
    """A failing query in a thread reaches the Deferred as TableTemporaryError."""
    table = _table(tmp_path, tmp_path / "missing.sqlite", "query = SELECT 1 WHERE '%s'='x'\n", reactor)
    with pytest.raises(TableTemporaryError):
        yield table.lookup("x")
