# -*- test-case-name: tests.auth.test_mechs -*-
"""What a server mechanism may ask of the auth service.

A mechanism never sees storage.  It gets a *backend* with:

- ``await backend.verify_plain(authcid, password, authzid="")`` -> a final
  :class:`~mailstack.auth.request.SASLStep` (plaintext mechanisms);
- ``await backend.credentials(authcid, scheme)`` -> :class:`Credentials`
  in the mechanism's own scheme, or raises :class:`MechanismFailure`
  carrying the failure step (for instance when the user's password is
  stored in a scheme the mechanism cannot use);
- ``backend.succeed(user, data=b"")`` and ``backend.fail(user, reason)``
  to finish a conversation, so that the service logs it;
- ``backend.hostname`` for challenges that name the server.

Each mechanism object serves one conversation: ``await mech.step(response)``
is called with the client's decoded data (None when the client sent no
initial response) until the returned step is not ``continue``.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    """A user's credentials in the scheme a mechanism asked for.

    Attributes:
        user: the normalised user name.
        raw: the scheme's raw value (CRAM-MD5: 32-byte context; SCRAM: the
            ``ITER,SALT,STOREDKEY,SERVERKEY`` text).
    """

    user: str
    raw: object

    def __repr__(self):
        return "Credentials(user=%r, ...)" % self.user


class MechanismFailure(Exception):
    """Raised by a backend to end a conversation; ``step`` is the failure to return."""

    def __init__(self, step):
        super().__init__(step.reason)
        self.step = step


class ProtocolError(Exception):
    """The client sent data the mechanism cannot parse."""


def split_nul(data, count):
    """Split ``data`` on NUL into exactly ``count`` parts.

    Raises:
        ProtocolError: when the number of parts differs.
    """
    parts = data.split(b"\0")
    if len(parts) != count:
        raise ProtocolError("expected %d NUL-separated fields, got %d" % (count, len(parts)))
    return parts


def utf8(data, what):
    """Decode UTF-8 client data.

    Raises:
        ProtocolError: naming ``what`` when the bytes are not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("%s is not valid UTF-8" % what) from None
