# -*- test-case-name: tests.auth.test_mechs -*-
"""The LOGIN mechanism (draft-murchison-sasl-login).

The server asks ``Username:`` then ``Password:``; a client's initial
response is taken as the user name.  Obsolete but still what Outlook and
many devices use.
"""

from mailstack.auth.mechs.base import ProtocolError, utf8
from mailstack.auth.request import continue_with


class LoginMechanism:
    """Server side of one LOGIN conversation."""

    def __init__(self, backend):
        self._backend = backend
        self._user = None

    async def step(self, response):
        """Answer the client; see :mod:`mailstack.auth.mechs.base`."""
        if self._user is None:
            if response is None:
                return continue_with(b"Username:")
            try:
                self._user = utf8(response, "user name")
            except ProtocolError as err:
                return self._backend.fail("", "invalid input (%s)" % err)
            if not self._user:
                return self._backend.fail("", "invalid input (empty user name)")
            return continue_with(b"Password:")
        try:
            password = utf8(response or b"", "password")
        except ProtocolError as err:
            return self._backend.fail(self._user, "invalid input (%s)" % err)
        return await self._backend.verify_plain(self._user, password)
