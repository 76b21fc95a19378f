# -*- test-case-name: tests.auth.test_schemes -*-
"""SCRAM-SHA-1 and SCRAM-SHA-256 password schemes (RFC 5802 §3, RFC 7677).

Dovecot stores ``{SCRAM-SHA-256}ITER,SALT,STOREDKEY,SERVERKEY`` with the
salt and both keys base64-encoded (Dovecot ``password-scheme-scram.c``),
where::

    SaltedPassword = PBKDF2-HMAC-H(password, salt, ITER)
    StoredKey      = H(HMAC(SaltedPassword, "Client Key"))
    ServerKey      = HMAC(SaltedPassword, "Server Key")

That is exactly what a SCRAM server needs, so the SCRAM mechanisms can run
against these credentials without the plaintext password.
"""

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

ITERATIONS = 4096
SALT_LENGTH = 16


@dataclass(frozen=True)
class ScramCredentials:
    """What a SCRAM server keeps for a user.

    Attributes:
        iterations: the PBKDF2 iteration count.
        salt: the raw salt.
        stored_key: H(ClientKey).
        server_key: HMAC(SaltedPassword, "Server Key").
    """

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def __repr__(self):
        return "ScramCredentials(iterations=%d, ...)" % self.iterations


def salted_password(algorithm, password, salt, iterations):
    """Return SaltedPassword := Hi(password, salt, i) (RFC 5802 §2.2)."""
    return hashlib.pbkdf2_hmac(algorithm, password, salt, iterations)


def keys(algorithm, salted):
    """Return ``(client_key, stored_key, server_key)`` from SaltedPassword."""
    client_key = hmac.new(salted, b"Client Key", algorithm).digest()
    stored_key = hashlib.new(algorithm, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", algorithm).digest()
    return client_key, stored_key, server_key


def credentials(algorithm, password, salt=None, iterations=ITERATIONS):
    """Return :class:`ScramCredentials` for a plaintext ``password`` (bytes)."""
    salt = os.urandom(SALT_LENGTH) if salt is None else salt
    _, stored_key, server_key = keys(algorithm, salted_password(algorithm, password, salt, iterations))
    return ScramCredentials(iterations, salt, stored_key, server_key)


def format_credentials(creds):
    """Return Dovecot's ``ITER,SALT,STOREDKEY,SERVERKEY`` text."""
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return "%d,%s,%s,%s" % (creds.iterations, b64(creds.salt), b64(creds.stored_key), b64(creds.server_key))


def parse_credentials(algorithm, text):
    """Parse Dovecot's SCRAM text into :class:`ScramCredentials`.

    Raises:
        ValueError: when the text is malformed or the key lengths do not fit ``algorithm``.
    """
    parts = text.strip().split(",")
    if len(parts) != 4 or not parts[0].isdigit():
        raise ValueError("SCRAM credentials must be ITER,SALT,STOREDKEY,SERVERKEY")
    try:
        salt, stored, server = (base64.b64decode(p, validate=True) for p in parts[1:])
    except (binascii.Error, ValueError):
        raise ValueError("SCRAM credentials: bad base64") from None
    size = hashlib.new(algorithm).digest_size
    if len(stored) != size or len(server) != size or int(parts[0]) < 1:
        raise ValueError("SCRAM credentials: wrong key length for %s" % algorithm)
    return ScramCredentials(int(parts[0]), salt, stored, server)


def scheme(algorithm):
    """Return ``(generate, verify)`` working on the credentials text for ``algorithm``."""

    def generate(password):
        return format_credentials(credentials(algorithm, password))

    def verify(password, raw):
        try:
            creds = parse_credentials(algorithm, raw)
        except ValueError:
            return False
        _, stored_key, _ = keys(algorithm, salted_password(algorithm, password, creds.salt, creds.iterations))
        return hmac.compare_digest(stored_key, creds.stored_key)

    return generate, verify
