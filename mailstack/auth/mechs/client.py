# -*- test-case-name: tests.auth.test_mechs -*-
"""Client sides of the SASL mechanisms, for tests and for mailstack's own SMTP client.

Usage::

    client = client_for("SCRAM-SHA-256", "joe@example.com", "secret")
    data = client.start()              # initial response, or None
    ...  data = client.respond(challenge)   # for every server challenge
    client.finish(final_data)          # check the server's final data (SCRAM)

``respond`` and ``finish`` raise :class:`ClientError` when the server's
data is malformed or (SCRAM) its signature proves it does not know the
password.  All data is raw bytes; base64 is the protocol's business.
"""

import base64
import binascii
import hmac
import os

from mailstack.auth.schemes import scram


class ClientError(Exception):
    """The server's data is malformed or fails verification."""


class PlainClient:
    """PLAIN (RFC 4616): ``authzid NUL authcid NUL password`` as the initial response."""

    name = "PLAIN"

    def __init__(self, user, password, authzid="", initial=True):
        self._data = b"\0".join(s.encode("utf-8") for s in (authzid, user, password))
        self._initial = initial

    def start(self):
        return self._data if self._initial else None

    def respond(self, challenge):
        return self._data

    def finish(self, data):
        if data:
            raise ClientError("unexpected final data")


class LoginClient:
    """LOGIN: the user name, then the password, whatever the prompts say."""

    name = "LOGIN"

    def __init__(self, user, password, initial=False):
        self._answers = [user.encode("utf-8"), password.encode("utf-8")]
        self._initial = initial

    def start(self):
        return self._answers.pop(0) if self._initial else None

    def respond(self, challenge):
        if not self._answers:
            raise ClientError("unexpected challenge %r" % challenge[:20])
        return self._answers.pop(0)

    def finish(self, data):
        if data:
            raise ClientError("unexpected final data")


class CramMD5Client:
    """CRAM-MD5 (RFC 2195): ``user hex(HMAC-MD5(password, challenge))``."""

    name = "CRAM-MD5"

    def __init__(self, user, password):
        self._user = user
        self._password = password.encode("utf-8")

    def start(self):
        return None

    def respond(self, challenge):
        if not challenge:
            raise ClientError("empty CRAM-MD5 challenge")
        digest = hmac.new(self._password, challenge, "md5").hexdigest()
        return ("%s %s" % (self._user, digest)).encode("utf-8")

    def finish(self, data):
        if data:
            raise ClientError("unexpected final data")


def _escape(name):
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    """SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802), without channel binding (GS2 ``n,,``)."""

    def __init__(self, algorithm, user, password, authzid="", cbind_flag="n", nonce=None):
        self.name = "SCRAM-SHA-1" if algorithm == "sha1" else "SCRAM-SHA-256"
        self._algorithm = algorithm
        self._password = password.encode("utf-8")
        self._gs2 = "%s,%s," % (cbind_flag, "a=" + _escape(authzid) if authzid else "")
        self._nonce = nonce or base64.b64encode(os.urandom(18)).decode("ascii")
        self._first_bare = "n=%s,r=%s" % (_escape(user), self._nonce)
        self._server_signature = None

    def start(self):
        return (self._gs2 + self._first_bare).encode("utf-8")

    def respond(self, challenge):
        if self._server_signature is not None:
            raise ClientError("unexpected challenge after client-final")
        try:
            attrs = dict(part.split("=", 1) for part in challenge.decode("utf-8").split(","))
            nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        except (ValueError, KeyError, UnicodeDecodeError, binascii.Error):
            raise ClientError("malformed server-first-message") from None
        if not nonce.startswith(self._nonce) or iterations < 1:
            raise ClientError("server nonce does not extend ours")
        salted = scram.salted_password(self._algorithm, self._password, salt, iterations)
        client_key, stored_key, server_key = scram.keys(self._algorithm, salted)
        without_proof = "c=%s,r=%s" % (base64.b64encode(self._gs2.encode("utf-8")).decode("ascii"), nonce)
        auth_message = ",".join((self._first_bare, challenge.decode("utf-8"), without_proof)).encode("utf-8")
        signature = hmac.new(stored_key, auth_message, self._algorithm).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self._server_signature = hmac.new(server_key, auth_message, self._algorithm).digest()
        return ("%s,p=%s" % (without_proof, base64.b64encode(proof).decode("ascii"))).encode("ascii")

    def finish(self, data):
        if not data.startswith(b"v="):
            raise ClientError("server-final-message without verifier")
        try:
            signature = base64.b64decode(data[2:], validate=True)
        except (binascii.Error, ValueError):
            raise ClientError("bad server signature encoding") from None
        if self._server_signature is None or not hmac.compare_digest(signature, self._server_signature):
            raise ClientError("server signature does not verify: the server does not know the password")


def client_for(mechanism, user, password, authzid=""):
    """Return a client for ``mechanism`` (any case).

    Raises:
        ValueError: for a mechanism this module does not implement.
    """
    name = mechanism.upper()
    if name == "PLAIN":
        return PlainClient(user, password, authzid)
    if name == "LOGIN":
        return LoginClient(user, password)
    if name == "CRAM-MD5":
        return CramMD5Client(user, password)
    if name in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        return ScramClient("sha1" if name == "SCRAM-SHA-1" else "sha256", user, password, authzid)
    raise ValueError("no client for SASL mechanism %r" % mechanism)


CLIENT_NAMES = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256")

