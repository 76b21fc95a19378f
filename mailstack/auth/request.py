# -*- test-case-name: tests.auth.test_service -*-
"""The values that cross the auth API: who asks, and what a SASL step answers.

These are re-exported by :mod:`mailstack.auth.service`, which is where
callers import them from; they live here so that mechanisms can build
steps without importing the service.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AuthRequest:
    """Who is asking.

    Attributes:
        service: ``smtp``, ``imap``, ``pop3`` or the master.cf service name.
        remote_ip: the client's address ("" for local tools).
        local_ip: the server address the client connected to.
        secure: TLS, or a connection counted as secure (loopback,
            ``login_trusted_networks``).
        session: an id for log lines.
    """

    service: str
    remote_ip: str = ""
    local_ip: str = ""
    secure: bool = False
    session: str = ""


@dataclass(frozen=True)
class SASLStep:
    """One answer of a SASL conversation.

    Attributes:
        kind: ``continue``, ``success`` or ``failure``.
        challenge: raw (not base64) server challenge for ``continue``, or
            additional server data for ``success`` (SCRAM's ``v=...``).
        user: the authenticated, normalised user on success.
        reason: why it failed, for the log; never sent to clients verbatim.
        temporary: the failure is internal (passdb down): clients get a
            4xx / ``[UNAVAILABLE]`` instead of "authentication failed".
    """

    kind: str
    challenge: bytes = b""
    user: str = ""
    reason: str = ""
    temporary: bool = False

    @property
    def ok(self):
        """True for a success step."""
        return self.kind == "success"


def continue_with(challenge):
    """Return a ``continue`` step carrying ``challenge``."""
    return SASLStep("continue", challenge)


def success(user, data=b""):
    """Return a ``success`` step for ``user`` with optional final server data."""
    return SASLStep("success", data, user=user)


def failure(reason, user="", temporary=False):
    """Return a ``failure`` step."""
    return SASLStep("failure", user=user, reason=reason, temporary=temporary)


@dataclass(frozen=True)
class UserInfo:
    """What the userdb knows about a user.

    Attributes:
        user: the normalised user name.
        uid: numeric user id (-1 when the userdb gives none).
        gid: numeric group id (-1 when the userdb gives none).
        home: the home directory ("" when unknown).
        mail: the mail location, e.g. ``maildir:/var/mail/example.com/joe/Maildir``.
        quota_bytes: the storage quota in bytes; 0 means no limit.
        extra: every other userdb field, name -> value.
    """

    user: str
    uid: int = -1
    gid: int = -1
    home: str = ""
    mail: str = ""
    quota_bytes: int = 0
    extra: dict = field(default_factory=dict)

    def fields(self):
        """Return the userdb fields as ``[(name, value), ...]``, as ``doveadm user`` prints them."""
        result = []
        if self.uid >= 0:
            result.append(("uid", str(self.uid)))
        if self.gid >= 0:
            result.append(("gid", str(self.gid)))
        result.append(("home", self.home))
        result.append(("mail", self.mail))
        if self.quota_bytes:
            result.append(("quota_bytes", str(self.quota_bytes)))
        result.extend(sorted(self.extra.items()))
        return result
