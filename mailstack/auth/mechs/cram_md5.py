# -*- test-case-name: tests.auth.test_mechs -*-
"""The CRAM-MD5 mechanism (RFC 2195).

The server sends a unique challenge ``<random.time@hostname>``; the client
answers ``user SP hex(HMAC-MD5(password, challenge))``.  The server needs
the ``{CRAM-MD5}`` context or the plaintext password; the service turns a
plaintext password into the context, and refuses users whose password is
stored in any other scheme.
"""

import hmac
import os
import time

from mailstack.auth.mechs.base import Credentials, MechanismFailure, ProtocolError, utf8
from mailstack.auth.request import continue_with
from mailstack.auth.schemes import cram_md5

SCHEME = "CRAM-MD5"


class CramMD5Mechanism:
    """Server side of one CRAM-MD5 conversation."""

    def __init__(self, backend, challenge=None):
        self._backend = backend
        self._challenge = None
        self._fixed_challenge = challenge  # tests pass RFC 2195's example

    async def step(self, response):
        """Answer the client; see :mod:`mailstack.auth.mechs.base`."""
        if self._challenge is None:
            if response:
                return self._backend.fail("", "invalid input (CRAM-MD5 has no initial response)")
            self._challenge = self._fixed_challenge or (
                "<%d.%d@%s>" % (int.from_bytes(os.urandom(8), "big"), int(time.time()),
                                self._backend.hostname)).encode("ascii")
            return continue_with(self._challenge)
        try:
            user, _, digest = utf8(response or b"", "CRAM-MD5 response").rpartition(" ")
            if not user or len(digest) != 32:
                raise ProtocolError("expected 'user digest'")
            answer = bytes.fromhex(digest)
        except (ProtocolError, ValueError) as err:
            return self._backend.fail("", "invalid input (%s)" % err)
        try:
            creds = await self._backend.credentials(user, SCHEME)
        except MechanismFailure as failed:
            return failed.step
        return self._check(creds, answer)

    def _check(self, creds: Credentials, answer):
        expected = cram_md5.hmac_from_context(creds.raw, self._challenge)
        if hmac.compare_digest(expected, answer):
            return self._backend.succeed(creds.user)
        return self._backend.fail(creds.user, "Password mismatch")
