"""The sqlite passdb/userdb: Dovecot-style sql.conf, quoting, unknown user vs. SQL failure."""

import sqlite3

import pytest
import pytest_twisted
from twisted.internet import reactor

from mailstack.auth.schemes import registry as schemes
from mailstack.auth.service import AuthService, AuthTemporaryError
from mailstack.config.maincf import ConfigError
from tests.auth.helpers import REQUEST, captured_log, run_sasl, service, write_config

SQL_CONF = """\
# dovecot-sql.conf.ext style
driver = sqlite
connect = users.db
default_pass_scheme = SHA512-CRYPT
password_query = SELECT username AS user, password, allow_nets FROM users \\
    WHERE username = '%u' AND active = 1
user_query = SELECT uid, gid, home, 'maildir:' || maildir AS mail, quota_rule \\
    FROM users WHERE username = '%u'
"""


@pytest.fixture
def sql_dir(tmp_path):
    db = sqlite3.connect(str(tmp_path / "users.db"))
    db.execute("CREATE TABLE users (username TEXT, password TEXT, active INT, uid INT, gid INT, home TEXT, "
               "maildir TEXT, quota_rule TEXT, allow_nets TEXT)")
    rows = [
        ("joe@example.com", schemes.generate("SHA512-CRYPT", "pw").split("}", 1)[1], 1, 1000, 1000,
         "/home/joe", "/home/joe/Maildir", "*:storage=1M", None),
        ("ann@example.com", schemes.generate("SCRAM-SHA-256", "annpw"), 1, 1001, 1001, "/home/ann",
         "/home/ann/Maildir", None, None),
        ("old@example.com", "{PLAIN}pw", 0, 1002, 1002, "", "", None, None),
        ("o'neil@example.com", "{PLAIN}quote", 1, 1003, 1003, "", "", None, None),
    ]
    db.executemany("INSERT INTO users VALUES (?,?,?,?,?,?,?,?,?)", rows)
    db.commit()
    db.close()
    (tmp_path / "sql.conf").write_text(SQL_CONF)
    return tmp_path


def _config(sql_dir):
    return write_config(sql_dir, "passdb = sqlite:%s/sql.conf\nuserdb = sqlite:%s/sql.conf\n"
                                 "auth_mechanisms = plain scram-sha-256\n" % (sql_dir, sql_dir))


@pytest_twisted.ensureDeferred
async def test_sqlite_passdb_and_userdb_in_threads(sql_dir):
    """Queries run in the reactor's thread pool; passwords, SCRAM credentials and user fields come back."""
    auth = AuthService(_config(sql_dir), reactor)
    assert (await auth.verify_plain("joe@example.com", "pw", REQUEST)).kind == "success"
    assert (await run_sasl(auth, "SCRAM-SHA-256", "ann@example.com", "annpw")).kind == "success"
    info = await auth.lookup_user("joe@example.com")
    assert (info.uid, info.home, info.mail, info.quota_bytes) == (1000, "/home/joe", "maildir:/home/joe/Maildir",
                                                                  1024 * 1024)


@pytest_twisted.ensureDeferred
async def test_sqlite_no_row_is_unknown_user(sql_dir):
    """An inactive or missing user is 'unknown user'; a quote in the name is escaped, not injected."""
    auth = service(_config(sql_dir))
    with captured_log() as log:
        assert (await auth.verify_plain("old@example.com", "pw", REQUEST)).kind == "failure"
        injected = await auth.verify_plain("x' OR '1'='1", "pw", REQUEST)
    assert log[0] == "sql(old@example.com,192.0.2.1): unknown user"
    assert injected.kind == "failure" and not injected.temporary
    assert (await auth.verify_plain("o'neil@example.com", "quote", REQUEST)).kind == "success"


@pytest_twisted.ensureDeferred
async def test_sqlite_error_is_temporary(sql_dir):
    """A broken query is an internal failure: temporary, logged as an error, lookup_user raises."""
    (sql_dir / "sql.conf").write_text(SQL_CONF.replace("FROM users", "FROM no_such_table"))
    auth = service(_config(sql_dir))
    with captured_log() as log:
        step = await auth.verify_plain("joe@example.com", "pw", REQUEST)
    assert step.temporary and "no such table: no_such_table" in log[0]
    with pytest.raises(AuthTemporaryError):
        await auth.lookup_user("joe@example.com")


def test_sqlite_conf_errors(tmp_path):
    """A missing sql.conf or a non-sqlite driver is a configuration error."""
    with pytest.raises(ConfigError, match="cannot read"):
        service(write_config(tmp_path, "passdb = sqlite:%s/none.conf\n" % tmp_path))
    (tmp_path / "pg.conf").write_text("driver = pgsql\nconnect = host=db\n")
    with pytest.raises(ConfigError, match="driver pgsql is not supported"):
        service(write_config(tmp_path, "passdb = sqlite:%s/pg.conf\n" % tmp_path))
