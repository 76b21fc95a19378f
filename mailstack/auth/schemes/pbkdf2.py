# -*- test-case-name: tests.auth.test_schemes -*-
"""The PBKDF2 password scheme in Dovecot's format.

``{PBKDF2}$1$SALT$ROUNDS$HEXHASH``: PBKDF2-HMAC-SHA1 (RFC 8018 §5.2) of the
password with the salt *string* (16 random characters) as salt, ``ROUNDS``
iterations (Dovecot's default 5000) and a 20-byte result written in lower
case hex (Dovecot ``password-scheme-pbkdf2.c``).
"""

import hashlib
import hmac
import secrets
import string

ROUNDS = 5000
_SALT_CHARS = string.ascii_letters + string.digits


def generate(password, salt=None, rounds=ROUNDS):
    """Return the Dovecot PBKDF2 string for ``password`` (bytes)."""
    if salt is None:
        salt = "".join(secrets.choice(_SALT_CHARS) for _ in range(16))
    derived = hashlib.pbkdf2_hmac("sha1", password, salt.encode(), rounds, 20)
    return "$1$%s$%d$%s" % (salt, rounds, derived.hex())


def verify(password, raw):
    """Return True when ``raw`` (``$1$salt$rounds$hex``) matches ``password``; False when malformed."""
    parts = raw.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "1" or not parts[3].isdigit():
        return False
    salt, rounds, expected = parts[2], int(parts[3]), parts[4].lower()
    if rounds < 1:
        return False
    derived = hashlib.pbkdf2_hmac("sha1", password, salt.encode(), rounds, len(expected) // 2 or 20)
    return hmac.compare_digest(derived.hex(), expected)
