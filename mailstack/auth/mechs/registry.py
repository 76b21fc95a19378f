# -*- test-case-name: tests.auth.test_mechs -*-
"""The SASL mechanism registry.

Each :class:`Mechanism` says what it needs from the passdb (Dovecot's
``mech_passdb_need``): plaintext mechanisms ask the service to verify a
password and work with every scheme; the others need credentials in their
own scheme (or a plaintext password the service can derive them from).
Built-ins are listed one per line; a name registered twice is an error.
"""

from dataclasses import dataclass
from typing import Callable, Optional

from mailstack.auth.mechs import cram_md5, login, plain, scram


@dataclass(frozen=True)
class Mechanism:
    """One SASL mechanism.

    Attributes:
        name: the upper-case SASL name, as advertised.
        factory: ``(backend) -> conversation`` with an async ``step(response)``.
        plaintext: the password crosses the wire (refused on insecure
            connections when ``disable_plaintext_auth = yes``).
        scheme: the password scheme whose credentials the mechanism needs,
            or None when it only asks for plaintext verification.
    """

    name: str
    factory: Callable
    plaintext: bool
    scheme: Optional[str] = None

    def needs_text(self):
        """Describe what the mechanism needs, for log lines."""
        if self.scheme is None:
            return "a plaintext password check"
        return "a %s or plaintext password" % self.scheme


_BUILTINS = (
    Mechanism("PLAIN", plain.PlainMechanism, plaintext=True),
    Mechanism("LOGIN", login.LoginMechanism, plaintext=True),
    Mechanism("CRAM-MD5", cram_md5.CramMD5Mechanism, plaintext=False, scheme="CRAM-MD5"),
    Mechanism("SCRAM-SHA-1", scram.scram_sha1, plaintext=False, scheme="SCRAM-SHA-1"),
    Mechanism("SCRAM-SHA-256", scram.scram_sha256, plaintext=False, scheme="SCRAM-SHA-256"),
)


def _index(entries):
    table = {}
    for entry in entries:
        if entry.name in table:
            raise RuntimeError("SASL mechanism %s registered twice" % entry.name)
        table[entry.name] = entry
    return table


MECHANISMS = _index(_BUILTINS)


def names():
    """Return the mechanism names in registry order."""
    return [entry.name for entry in _BUILTINS]


def lookup(name):
    """Return the :class:`Mechanism` called ``name`` (any case), or None."""
    return MECHANISMS.get(name.upper())
