# -*- test-case-name: tests.auth.test_userdb -*-
"""The static userdb: the same fields for every user, with ``%u``/``%n``/``%d`` expanded.

``userdb = static:uid=5000 gid=5000 home=/var/vmail/%d/%n mail=maildir:~/Maildir``.
Every user exists (Dovecot's ``allow_all_users=yes``): use it with a passdb
that decides who may log in.
"""

from mailstack.auth import username as usernames
from mailstack.auth.passdb.base import parse_extra_fields


class StaticUserdb:
    """``userdb = static:FIELDS``."""

    name = "static"

    def __init__(self, args, ctx):
        self._fields = parse_extra_fields(args)

    async def lookup(self, user):
        """Return the expanded fields for any ``user``."""
        return {name: usernames.expand(value, user) for name, value in self._fields.items()}
