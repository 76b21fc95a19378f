# -*- test-case-name: tests.auth.test_sqlite -*-
"""The sqlite userdb: ``user_query`` of the sql.conf file (see :mod:`mailstack.auth.passdb.sqlite`)."""

from mailstack.auth.passdb.sqlite import SqliteDatabase


class SqliteUserdb:
    """``userdb = sqlite:/path/to/sql.conf``."""

    name = "sql"

    def __init__(self, args, ctx):
        self._db = SqliteDatabase(args.strip())
        self._ctx = ctx

    async def lookup(self, user):
        """Return the user query's row as fields, or None; raises PassdbError on failure."""
        row = await self._ctx.run_in_thread(self._db.query, "user_query", user)
        if row is None:
            return None
        return {name: value for name, value in row.items() if value != ""}
