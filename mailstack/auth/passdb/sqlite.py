# -*- test-case-name: tests.auth.test_sqlite -*-
"""The sqlite passdb and userdb, configured like Dovecot's sql driver.

``passdb = sqlite:/etc/mailstack/sql.conf`` names a file in the shape of
Dovecot's ``dovecot-sql.conf.ext``::

    driver = sqlite
    connect = /var/lib/mailstack/users.db
    default_pass_scheme = SHA512-CRYPT
    password_query = SELECT username AS user, password FROM users \\
                     WHERE username = '%u' AND active = 1
    user_query = SELECT home, uid, gid, 'maildir:' || maildir AS mail, quota_rule \\
                 FROM users WHERE username = '%u'

A line ending in ``\\`` continues on the next.  ``%u``, ``%n`` and ``%d``
are replaced by SQL-quoted values (single quotes doubled, as Dovecot's
``sql_escape_string``).  The password query's ``password`` column is the
stored password, ``user`` may correct the name's case, a ``nopassword``
column accepts any password, and any other column is an extra field.  The
user query's columns are userdb fields.  No row means "unknown user"; an
SQL error is an internal failure.  Queries run in threads, each on its
own short-lived connection (sqlite connections are bound to a thread).
"""

import os
import sqlite3

from mailstack.auth import username as usernames
from mailstack.auth.passdb.base import DriverArgsError, PassdbEntry, PassdbError


def read_sql_conf(path):
    """Parse a dovecot-sql.conf.ext-style file into a dict.

    Raises:
        DriverArgsError: when the file is unreadable or a line has no ``=``.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise DriverArgsError("cannot read %s: %s" % (path, err.strerror)) from None
    settings, pending = {}, ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical, pending = pending + stripped, ""
        name, eq, value = logical.partition("=")
        if not eq:
            raise DriverArgsError("%s:%d: expected name = value" % (path, number))
        settings[name.strip()] = value.strip()
    if pending:
        raise DriverArgsError("%s: continuation line at end of file" % path)
    return settings


def sql_escape(value):
    """Quote a value for inclusion between single quotes."""
    return value.replace("'", "''")


class SqliteDatabase:
    """The connection settings and queries of one sql.conf file."""

    def __init__(self, conf_path):
        if not conf_path:
            raise DriverArgsError("sqlite driver needs the path of its sql.conf file")
        settings = read_sql_conf(conf_path)
        driver = settings.get("driver", "sqlite")
        if driver != "sqlite":
            raise DriverArgsError("%s: driver %s is not supported here (only sqlite)" % (conf_path, driver))
        connect = settings.get("connect", "")
        if connect.startswith("dbname="):
            connect = connect[len("dbname="):]
        if not connect:
            raise DriverArgsError("%s: connect = PATH is missing" % conf_path)
        self.path = connect if os.path.isabs(connect) else os.path.join(os.path.dirname(conf_path), connect)
        self.settings = settings

    def query(self, name, user):
        """Run query ``name`` for ``user``; return the first row as a dict, or None.  Blocking.

        Raises:
            PassdbError: on any database error.
        """
        template = self.settings.get(name)
        if not template:
            raise PassdbError("%s is not set in the sql configuration" % name)
        sql = usernames.expand(template, user, escape=sql_escape)
        try:
            # mode=ro: lookups never write, and a missing file must not be created.
            connection = sqlite3.connect("file:%s?mode=ro" % self.path, uri=True, timeout=5)
            try:
                cursor = connection.execute(sql)
                row = cursor.fetchone()
                columns = [d[0] for d in cursor.description or ()]
            finally:
                connection.close()
        except sqlite3.Error as err:
            raise PassdbError("sqlite(%s): %s" % (self.path, err)) from None
        if row is None:
            return None
        return {column: ("" if value is None else str(value)) for column, value in zip(columns, row)}


class SqlitePassdb:
    """``passdb = sqlite:/path/to/sql.conf``."""

    name = "sql"
    credentials_lookup = True

    def __init__(self, args, ctx):
        self._db = SqliteDatabase(args.strip())
        self._ctx = ctx
        self._scheme = self._db.settings.get("default_pass_scheme")

    async def lookup(self, user):
        """Return a :class:`PassdbEntry` or None; raises :class:`PassdbError` on failure."""
        row = await self._ctx.run_in_thread(self._db.query, "password_query", user)
        if row is None:
            return None
        name = row.pop("user", "") or row.pop("username", "") or user
        password = row.pop("password", "")
        fields = dict(row)
        # A nopassword column counts only when it is set to something true:
        # an empty or NULL password alone must never open the account.
        if fields.pop("nopassword", "").strip().lower() not in ("", "0", "n", "no", "false"):
            fields["nopassword"] = ""
        return PassdbEntry(name, password or None, fields, self._scheme)
