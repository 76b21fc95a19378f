# -*- test-case-name: tests.auth.test_mechs -*-
"""The PLAIN mechanism (RFC 4616).

The client sends ``authzid NUL authcid NUL passwd`` in one message, either
as the initial response or after an empty challenge.  An authzid that is
neither empty nor equal to the authcid asks to act as another user: the
service allows it only when the authcid is a configured master user
(``auth_master_passdb``), as Dovecot's master users.
"""

from mailstack.auth.mechs.base import ProtocolError, split_nul, utf8
from mailstack.auth.request import continue_with


class PlainMechanism:
    """Server side of one PLAIN conversation."""

    def __init__(self, backend):
        self._backend = backend

    async def step(self, response):
        """Answer the client; see :mod:`mailstack.auth.mechs.base`."""
        if response is None:
            return continue_with(b"")
        try:
            authzid, authcid, password = (utf8(p, "PLAIN data") for p in split_nul(response, 3))
        except ProtocolError as err:
            return self._backend.fail("", "invalid input (%s)" % err)
        if not authcid:
            return self._backend.fail("", "invalid input (empty authcid)")
        return await self._backend.verify_plain(authcid, password, authzid)
