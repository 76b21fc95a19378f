# -*- test-case-name: tests.auth.test_passdb -*-
"""The static passdb: every user exists and shares one password.

``passdb = static:password=SECRET`` (the password may carry a
``{SCHEME}`` prefix; without one it is PLAIN, as in Dovecot), or
``static:nopassword`` to accept any password (for tests, or behind
another check).  ``%u``, ``%n``, ``%d`` are expanded in the password.
A static passdb without a password cannot give credentials, so CRAM-MD5
and SCRAM are not offered with ``nopassword``.
"""

from mailstack.auth import username as usernames
from mailstack.auth.passdb.base import DriverArgsError, PassdbEntry, parse_extra_fields


class StaticPassdb:
    """``passdb = static:password=...`` or ``static:nopassword``."""

    name = "static"

    def __init__(self, args, ctx):
        self._fields = parse_extra_fields(args)
        self._password = self._fields.pop("password", None)
        self._nopassword = "nopassword" in self._fields
        if self._password is None and not self._nopassword:
            raise DriverArgsError("static passdb needs password=... or nopassword")
        self.credentials_lookup = not self._nopassword

    async def lookup(self, user):
        """Return the shared entry for any ``user``."""
        password = None
        if not self._nopassword:
            password = usernames.expand(self._password, user)
            if not password.startswith("{"):
                password = "{PLAIN}" + password
        return PassdbEntry(user, password, dict(self._fields))
