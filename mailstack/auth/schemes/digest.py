# -*- test-case-name: tests.auth.test_schemes -*-
"""Plain and digest password schemes: PLAIN, SHA, SHA256, SHA512 and the salted SSHA family.

Formats, as Dovecot's ``password-scheme.c``:

- ``{PLAIN}secret`` (aliases ``CLEAR``, ``CLEARTEXT``): the password itself.
- ``{SHA}`` (alias ``SHA1``), ``{SHA256}``, ``{SHA512}``: the digest of the
  password, base64 by default (``.hex`` for hex).
- ``{PLAIN-MD5}`` (hex) and ``{LDAP-MD5}`` (base64): the MD5 digest, for old files.
- ``{SSHA}``, ``{SSHA256}``, ``{SSHA512}``, ``{SMD5}``: ``base64(digest(password + salt) + salt)``;
  Dovecot writes a 4-byte salt and accepts any length when verifying.

Every function takes and returns bytes; encoding is the registry's job.
"""

import hashlib
import hmac
import os

SALT_LENGTH = 4


def plain_generate(password):
    """Return the password itself."""
    return password


def plain_verify(password, raw):
    """Compare a plaintext password in constant time."""
    return hmac.compare_digest(password, raw)


def digest(algorithm):
    """Return ``(generate, verify, length)`` for an unsalted digest scheme."""
    size = hashlib.new(algorithm).digest_size

    def generate(password):
        return hashlib.new(algorithm, password).digest()

    def verify(password, raw):
        return hmac.compare_digest(hashlib.new(algorithm, password).digest(), raw)

    return generate, verify, size


def salted(algorithm):
    """Return ``(generate, verify)`` for a salted digest scheme: digest(pw + salt) + salt."""
    size = hashlib.new(algorithm).digest_size

    def generate(password, salt=None):
        salt = os.urandom(SALT_LENGTH) if salt is None else salt
        return hashlib.new(algorithm, password + salt).digest() + salt

    def verify(password, raw):
        if len(raw) <= size:
            return False
        expected, salt = raw[:size], raw[size:]
        return hmac.compare_digest(hashlib.new(algorithm, password + salt).digest(), expected)

    return generate, verify
