# -*- test-case-name: tests.auth.test_mechs -*-
"""The SCRAM-SHA-1 and SCRAM-SHA-256 mechanisms (RFC 5802, RFC 7677).

Conversation::

    C: n,,n=user,r=cnonce                       (client-first)
    S: r=cnonce+snonce,s=salt,i=4096            (server-first)
    C: c=biws,r=cnonce+snonce,p=proof           (client-final)
    S: v=signature                              (server-final, sent with success)

Channel binding is not offered: the GS2 header must be ``n,,`` or
``y,,`` (RFC 5802 §6: ``y`` means the client supports it but thinks the
server does not, which is true here); ``p=...`` is refused.  An authzid
(``a=``) is accepted only when it names the authenticating user.  The
server needs ``{SCRAM-SHA-*}`` credentials of the same hash, or the
plaintext password (the service derives them).
"""

import base64
import binascii
import hashlib
import hmac
import os

from mailstack.auth.mechs.base import MechanismFailure, ProtocolError, utf8
from mailstack.auth.request import continue_with
from mailstack.auth.schemes import scram


def _saslname(text):
    """Decode RFC 5802 §5.1 saslname escapes (=2C for ',' and =3D for '=').

    Raises:
        ProtocolError: for any other use of '='.
    """
    out, i = [], 0
    while i < len(text):
        if text[i] == "=":
            code = text[i + 1:i + 3]
            if code not in ("2C", "3D"):
                raise ProtocolError("bad escape in user name")
            out.append("," if code == "2C" else "=")
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_attributes(text):
    """Split ``a=b,c=d`` into [(a, b), (c, d)].

    Raises:
        ProtocolError: for an attribute without ``=``.
    """
    result = []
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ProtocolError("bad attribute %r" % part[:10])
        result.append((part[0], part[2:]))
    return result


class ScramMechanism:
    """Server side of one SCRAM conversation.

    Args:
        backend: see :mod:`mailstack.auth.mechs.base`.
        algorithm: ``sha1`` or ``sha256``.
        scheme: the matching password scheme name.
        server_nonce: ``() -> str`` giving the server's nonce part (tests
            pass RFC vectors); 24 random base64 characters by default.
    """

    def __init__(self, backend, algorithm, scheme, server_nonce=None):
        self._server_nonce = server_nonce or (lambda: base64.b64encode(os.urandom(18)).decode("ascii"))
        self._backend = backend
        self._algorithm = algorithm
        self._scheme = scheme
        self._state = "first"
        self._user = ""

    async def step(self, response):
        """Answer the client; see :mod:`mailstack.auth.mechs.base`."""
        try:
            if self._state == "first":
                if response is None:
                    return continue_with(b"")
                return await self._client_first(utf8(response, "client-first-message"))
            if self._state == "final":
                return self._client_final(utf8(response or b"", "client-final-message"))
        except ProtocolError as err:
            return self._backend.fail(self._user, "invalid input (%s)" % err)
        except MechanismFailure as failed:
            return failed.step
        return self._backend.fail(self._user, "invalid input (conversation already finished)")

    async def _client_first(self, message):
        # RFC 5802 §7: gs2-header = gs2-cbind-flag "," [ authzid ] ","
        flag, _, rest = message.partition(",")
        authzid_part, _, bare = rest.partition(",")
        if flag.startswith("p="):
            raise ProtocolError("channel binding is not supported")
        if flag not in ("n", "y"):
            raise ProtocolError("bad GS2 header")
        authzid = ""
        if authzid_part:
            if not authzid_part.startswith("a="):
                raise ProtocolError("bad authzid in GS2 header")
            authzid = _saslname(authzid_part[2:])
        attrs = parse_attributes(bare)
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r" or not attrs[1][1]:
            raise ProtocolError("client-first-message must start with n=...,r=...")
        if attrs[0][1].startswith("m=") or any(k == "m" for k, _ in attrs):
            raise ProtocolError("mandatory extensions are not supported")
        self._user = _saslname(attrs[0][1])
        if not self._user:
            raise ProtocolError("empty user name")
        creds_result = await self._backend.credentials(self._user, self._scheme)
        if authzid and authzid != self._user and authzid != creds_result.user:
            return self._backend.fail(creds_result.user, "authzid %s differs from the user and SCRAM "
                                      "does not support master users" % authzid)
        self._user = creds_result.user
        try:
            self._creds = scram.parse_credentials(self._algorithm, creds_result.raw)
        except ValueError as err:
            return self._backend.fail(self._user, "invalid %s credentials (%s)" % (self._scheme, err), True)
        self._nonce = attrs[1][1] + self._server_nonce()
        self._gs2_header = message[:len(message) - len(bare)]
        self._client_first_bare = bare
        self._server_first = "r=%s,s=%s,i=%d" % (self._nonce, base64.b64encode(self._creds.salt).decode("ascii"),
                                                 self._creds.iterations)
        self._state = "final"
        return continue_with(self._server_first.encode("ascii"))

    def _client_final(self, message):
        self._state = "done"
        without_proof, sep, proof_text = message.rpartition(",p=")
        if not sep:
            raise ProtocolError("client-final-message without proof")
        attrs = dict(parse_attributes(without_proof))
        expected_cbind = base64.b64encode(self._gs2_header.encode("utf-8")).decode("ascii")
        if attrs.get("c") != expected_cbind:
            raise ProtocolError("channel binding data does not match the GS2 header")
        if attrs.get("r") != self._nonce:
            raise ProtocolError("wrong nonce")
        try:
            proof = base64.b64decode(proof_text, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("bad proof encoding") from None
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof)).encode("utf-8")
        creds = self._creds
        signature = hmac.new(creds.stored_key, auth_message, self._algorithm).digest()
        if len(proof) != len(signature):
            return self._backend.fail(self._user, "Password mismatch")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.new(self._algorithm, client_key).digest(), creds.stored_key):
            return self._backend.fail(self._user, "Password mismatch")
        server_signature = hmac.new(creds.server_key, auth_message, self._algorithm).digest()
        return self._backend.succeed(self._user, b"v=" + base64.b64encode(server_signature))


def scram_sha1(backend):
    """Return a SCRAM-SHA-1 server conversation."""
    return ScramMechanism(backend, "sha1", "SCRAM-SHA-1")


def scram_sha256(backend):
    """Return a SCRAM-SHA-256 server conversation."""
    return ScramMechanism(backend, "sha256", "SCRAM-SHA-256")
