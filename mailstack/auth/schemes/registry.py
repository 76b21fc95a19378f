# -*- test-case-name: tests.auth.test_schemes -*-
"""The password scheme registry and Dovecot's ``{SCHEME}`` stored-password syntax.

A stored password is ``{SCHEME}data`` or ``{SCHEME.ENC}data`` where ENC is
``b64``/``base64`` or ``hex`` (case-insensitive), as in Dovecot's
``password-scheme.c``; without a prefix the ``default_pass_scheme`` applies.
Binary schemes (SHA*, SSHA*, CRAM-MD5) have a default encoding; a value
whose length only fits the other encoding is decoded with that one, as
Dovecot does, because both forms are found in the wild.

Each :class:`Scheme` holds ``generate(password) -> raw`` and
``verify(password, raw) -> bool`` working on bytes passwords and *raw*
values (bytes for binary schemes, str for text schemes such as
``SHA512-CRYPT``).  The functions here wrap them with the encoding.

Usage::

    stored = registry.generate("SHA512-CRYPT", "secret")   # '{SHA512-CRYPT}$6$...'
    registry.verify("secret", stored, default_scheme="CRYPT")  # True

Hashing is slow on purpose: callers on the reactor thread must run
:func:`verify` and :func:`generate` in a thread.
"""

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Callable

from mailstack.auth.schemes import cram_md5, crypt, digest, pbkdf2, scram
from mailstack.auth.schemes.crypt import SchemeUnavailable

__all__ = ["Scheme", "SCHEMES", "SchemeError", "SchemeUnavailable", "StoredPassword",
           "lookup", "parse", "generate", "verify", "names"]


class SchemeError(ValueError):
    """An unknown scheme name or a stored password that cannot be decoded."""


@dataclass(frozen=True)
class Scheme:
    """One password scheme.

    Attributes:
        name: the canonical upper-case name (``SHA512-CRYPT``).
        generate: ``(password: bytes) -> raw``.
        verify: ``(password: bytes, raw) -> bool``.
        encoding: ``"none"`` for text schemes, ``"base64"`` or ``"hex"`` for binary ones.
        raw_length: the decoded length of binary schemes with a fixed size, else 0.
        plaintext: the stored value is the password itself (PLAIN).
        weak: the scheme is unsalted or otherwise unfit for new passwords.
        aliases: other names accepted in ``{...}``.
    """

    name: str
    generate: Callable
    verify: Callable
    encoding: str = "none"
    raw_length: int = 0
    plaintext: bool = False
    weak: bool = False
    aliases: tuple = field(default_factory=tuple)


def _scheme(name, pair, **kwargs):
    return Scheme(name, pair[0], pair[1], **kwargs)


_sha1, _sha256, _sha512 = digest.digest("sha1"), digest.digest("sha256"), digest.digest("sha512")
_md5 = digest.digest("md5")

_BUILTINS = (
    Scheme("PLAIN", digest.plain_generate, digest.plain_verify, plaintext=True, weak=True,
           aliases=("CLEAR", "CLEARTEXT")),
    Scheme("CRYPT", crypt.crypt_generate, crypt.crypt_verify),
    Scheme("MD5-CRYPT", crypt.md5_crypt_generate, crypt.md5_crypt_verify, weak=True, aliases=("MD5",)),
    Scheme("DES-CRYPT", crypt.des_crypt_generate, crypt.des_crypt_verify, weak=True),
    Scheme("SHA256-CRYPT", crypt.sha256_crypt_generate, crypt.sha256_crypt_verify),
    Scheme("SHA512-CRYPT", crypt.sha512_crypt_generate, crypt.sha512_crypt_verify),
    Scheme("BLF-CRYPT", crypt.blf_crypt_generate, crypt.blf_crypt_verify),
    Scheme("ARGON2I", crypt.argon2i_generate, crypt.argon2i_verify),
    Scheme("ARGON2ID", crypt.argon2id_generate, crypt.argon2id_verify),
    Scheme("PBKDF2", pbkdf2.generate, pbkdf2.verify),
    _scheme("SSHA", digest.salted("sha1"), encoding="base64", weak=True),
    _scheme("SSHA256", digest.salted("sha256"), encoding="base64"),
    _scheme("SSHA512", digest.salted("sha512"), encoding="base64"),
    Scheme("SHA", _sha1[0], _sha1[1], "base64", _sha1[2], weak=True, aliases=("SHA1",)),
    Scheme("SHA256", _sha256[0], _sha256[1], "base64", _sha256[2], weak=True),
    Scheme("SHA512", _sha512[0], _sha512[1], "base64", _sha512[2], weak=True),
    Scheme("PLAIN-MD5", _md5[0], _md5[1], "hex", _md5[2], weak=True),
    Scheme("LDAP-MD5", _md5[0], _md5[1], "base64", _md5[2], weak=True),
    _scheme("SMD5", digest.salted("md5"), encoding="base64", weak=True),
    Scheme("CRAM-MD5", cram_md5.generate, cram_md5.verify, "hex", cram_md5.RAW_LENGTH, weak=True),
    _scheme("SCRAM-SHA-1", scram.scheme("sha1")),
    _scheme("SCRAM-SHA-256", scram.scheme("sha256")),
)


def _index(schemes):
    table = {}
    for scheme in schemes:
        for key in (scheme.name,) + scheme.aliases:
            if key in table:
                raise RuntimeError("password scheme %s registered twice" % key)
            table[key] = scheme
    return table


SCHEMES = _index(_BUILTINS)


def names():
    """Return the canonical scheme names, in registry order."""
    return [scheme.name for scheme in _BUILTINS]


def lookup(name):
    """Return the :class:`Scheme` called ``name`` (any case, aliases too).

    Raises:
        SchemeError: for an unknown name; the message lists the known ones.
    """
    try:
        return SCHEMES[name.upper()]
    except KeyError:
        raise SchemeError("unknown password scheme %r (known: %s)" % (name, " ".join(names()))) from None


@dataclass(frozen=True)
class StoredPassword:
    """A stored password split into its scheme, encoding and data.

    Attributes:
        scheme: the :class:`Scheme`.
        encoding: the encoding actually used for ``data`` (``none``, ``base64``, ``hex``).
        data: the text after the ``{SCHEME}`` prefix.
        explicit: the value carried a ``{SCHEME}`` prefix.
    """

    scheme: Scheme
    encoding: str
    data: str
    explicit: bool = True

    def __repr__(self):
        return "StoredPassword(%s)" % self.scheme.name

    @property
    def label(self):
        """The scheme name, as it goes into log lines."""
        return self.scheme.name

    def raw(self):
        """Return the decoded value the scheme's functions work on.

        Raises:
            SchemeError: when the data does not decode.
        """
        return _decode(self.scheme, self.encoding, self.data)


_ENCODINGS = {"b64": "base64", "base64": "base64", "hex": "hex"}


def parse(stored, default_scheme="CRYPT"):
    """Split a stored password into a :class:`StoredPassword`.

    Args:
        stored: ``{SCHEME}data``, ``{SCHEME.hex}data`` or a bare hash.
        default_scheme: the scheme of a bare hash (``default_pass_scheme``).

    Raises:
        SchemeError: for an unknown scheme or encoding.
    """
    explicit = stored.startswith("{") and "}" in stored
    if explicit:
        label, _, data = stored[1:].partition("}")
    else:
        label, data = default_scheme, stored
    name, dot, suffix = label.partition(".")
    scheme = lookup(name)
    encoding = scheme.encoding
    if dot:
        try:
            encoding = _ENCODINGS[suffix.lower()]
        except KeyError:
            raise SchemeError("unknown password encoding %r in {%s}" % (suffix, label)) from None
    return StoredPassword(scheme, encoding, data, explicit)


def _decode(scheme, encoding, data):
    if encoding == "none":
        return data.encode("utf-8") if scheme.plaintext or scheme.encoding != "none" else data
    first, second = (_unhex, _unb64) if encoding == "hex" else (_unb64, _unhex)
    raw = first(data)
    # Dovecot's password_decode: a value whose length fits only the other
    # encoding is read with that one (hex and base64 overlap for some sizes).
    if raw is None or (scheme.raw_length and len(raw) != scheme.raw_length):
        other = second(data)
        if other is not None and (not scheme.raw_length or len(other) == scheme.raw_length):
            raw = other
    if raw is None:
        raise SchemeError("{%s} password is not valid %s" % (scheme.name, encoding))
    if scheme.encoding == "none" and not scheme.plaintext:
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise SchemeError("{%s} password does not decode to text" % scheme.name) from None
    return raw


def _unhex(data):
    try:
        return bytes.fromhex(data.strip())
    except ValueError:
        return None


def _unb64(data):
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def encode(scheme, raw, encoding=None):
    """Return ``{SCHEME}data`` (or ``{SCHEME.ENC}data`` for a non-default encoding)."""
    encoding = encoding or scheme.encoding
    label = scheme.name
    if encoding != scheme.encoding:
        label += ".HEX" if encoding == "hex" else ".B64"
    if isinstance(raw, str):
        raw_bytes = raw.encode("utf-8")
    else:
        raw_bytes = raw
    if encoding == "hex":
        data = raw_bytes.hex()
    elif encoding == "base64":
        data = base64.b64encode(raw_bytes).decode("ascii")
    else:
        data = raw if isinstance(raw, str) else raw.decode("utf-8")
    return "{%s}%s" % (label, data)


def _password_bytes(password):
    return password.encode("utf-8") if isinstance(password, str) else password


def generate(scheme_name, password, encoding=None):
    """Return the stored form of ``password`` in ``scheme_name``, with its ``{SCHEME}`` prefix.

    Args:
        scheme_name: any registered name, optionally with ``.hex``/``.b64``.
        password: str (UTF-8) or bytes.
        encoding: force ``hex`` or ``base64`` for binary schemes.

    Raises:
        SchemeError: for an unknown scheme or encoding.
        SchemeUnavailable: when the scheme's library is not installed.
    """
    name, dot, suffix = scheme_name.partition(".")
    scheme = lookup(name)
    if dot:
        try:
            encoding = _ENCODINGS[suffix.lower()]
        except KeyError:
            raise SchemeError("unknown password encoding %r" % suffix) from None
    return encode(scheme, scheme.generate(_password_bytes(password)), encoding)


def verify(password, stored, default_scheme="CRYPT"):
    """Return True when ``password`` matches the ``stored`` value.

    Raises:
        SchemeError: for an unknown scheme or undecodable data (not a mismatch:
            the caller should log it as a configuration problem).
        SchemeUnavailable: when the scheme's library is not installed.
    """
    if not isinstance(stored, StoredPassword):
        stored = parse(stored, default_scheme)
    return bool(stored.scheme.verify(_password_bytes(password), stored.raw()))


def digest_hint(stored):
    """Return a short non-secret fingerprint of a stored value, for cache keys."""
    return hashlib.sha256(stored.encode("utf-8")).hexdigest()[:16]
