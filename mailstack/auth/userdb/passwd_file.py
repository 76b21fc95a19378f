# -*- test-case-name: tests.auth.test_userdb -*-
"""The passwd-file userdb: uid, gid and home from their columns, the rest from extra fields.

Same file and arguments as :mod:`mailstack.auth.passdb.passwd_file`.
"""

from mailstack.auth import username as usernames
from mailstack.auth.passdb.base import parse_args
from mailstack.auth.passdb.passwd_file import PasswdFileReader
from mailstack.auth.userdb.base import userdb_fields


class PasswdFileUserdb:
    """``userdb = passwd-file:PATH``."""

    name = "passwd-file"

    def __init__(self, args, ctx):
        options, path = parse_args(args, ("username_format",))
        self._reader = PasswdFileReader(path)
        self._format = options.get("username_format", "%u")
        self._ctx = ctx

    @property
    def path(self):
        """The passwd-file path template."""
        return self._reader.template

    async def lookup(self, user):
        """Return the userdb fields of ``user`` or None; raises PassdbError on failure."""
        entry = await self._ctx.run_in_thread(self._reader.find, usernames.expand(self._format, user))
        if entry is None:
            return None
        fields = {}
        if entry.uid >= 0:
            fields["uid"] = str(entry.uid)
        if entry.gid >= 0:
            fields["gid"] = str(entry.gid)
        if entry.home:
            fields["home"] = entry.home
        fields.update(userdb_fields(entry.extra))
        return fields
