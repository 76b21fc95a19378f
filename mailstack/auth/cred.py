# -*- test-case-name: tests.auth.test_cred -*-
"""The Twisted cred seam: the auth service as a credentials checker, and a userdb realm.

POP3, IMAP and SMTP servers built on Twisted call
``portal.login(credentials, mind, interface)``.  This module gives them:

- :class:`AuthServiceChecker`, an ``ICredentialsChecker`` that accepts

  * ``IUsernamePassword`` (POP3 USER/PASS, IMAP LOGIN): checked with
    :meth:`AuthService.verify_plain`.  Pass a :class:`LoginCredentials` to
    carry the client's :class:`~mailstack.auth.service.AuthRequest` (its
    address drives the failure delay and the log lines); plain Twisted
    credentials get a request with the checker's service name only;
  * :class:`ISASLCompleted` (:class:`SASLCompleted`): the final step of a
    SASL conversation the protocol ran with :meth:`AuthService.start`.

  The avatar id is the normalised user name.  A wrong password or unknown
  user fails with ``UnauthorizedLogin``; an internal failure with
  :class:`TemporaryLoginFailure` (a subclass, so generic code still works,
  but protocols can answer 4xx / ``[UNAVAILABLE]``).

- :class:`UserRealm`: looks the avatar id up in the userdb and hands the
  :class:`~mailstack.auth.request.UserInfo` to a protocol's avatar factory.

- :func:`make_portal` puts both together::

      portal = make_portal(auth_service(ctx), lambda info, iface: Mailbox(store, info))
"""

from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import Attribute, implementer

from mailstack.auth.request import AuthRequest
from mailstack.auth.service import AuthTemporaryError


class TemporaryLoginFailure(error.UnauthorizedLogin):
    """Authentication could not be checked (passdb/userdb down): answer with a temporary error."""


class ISASLCompleted(ICredentials):
    """The result of a SASL conversation run through the auth service."""

    step = Attribute("the final SASLStep")
    request = Attribute("the AuthRequest of the conversation")


@implementer(IUsernamePassword)
class LoginCredentials:
    """A user name and password together with who sent them.

    Args:
        username: str or bytes (UTF-8).
        password: str or bytes (UTF-8).
        request: the :class:`~mailstack.auth.request.AuthRequest`.
    """

    def __init__(self, username, password, request):
        self.username = username
        self.password = password
        self.request = request

    def checkPassword(self, password):
        """Compare with a plaintext password (for checkers other than ours)."""
        return _text(password) == _text(self.password)

    def __repr__(self):
        return "LoginCredentials(%r, <password hidden>)" % (_text(self.username),)


@implementer(ISASLCompleted)
class SASLCompleted:
    """Credentials carrying a finished :class:`~mailstack.auth.request.SASLStep`."""

    def __init__(self, step, request=None):
        self.step = step
        self.request = request

    def __repr__(self):
        return "SASLCompleted(%s, user=%r)" % (self.step.kind, self.step.user)


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


@implementer(ICredentialsChecker)
class AuthServiceChecker:
    """Checks credentials with an :class:`~mailstack.auth.service.AuthService`.

    Args:
        auth: the auth service.
        service: the service name for credentials that carry no request.
    """

    credentialInterfaces = (IUsernamePassword, ISASLCompleted)

    def __init__(self, auth, service="imap"):
        self._auth = auth
        self._service = service

    def requestAvatarId(self, credentials):
        """Return a Deferred firing with the normalised user name, or failing with UnauthorizedLogin."""
        return defer.ensureDeferred(self._check(credentials))

    async def _check(self, credentials):
        if ISASLCompleted.providedBy(credentials):
            step = credentials.step
        else:
            request = getattr(credentials, "request", None) or AuthRequest(self._service)
            step = await self._auth.verify_plain(_text(credentials.username), _text(credentials.password), request)
        if step.ok:
            return step.user
        if step.temporary:
            raise TemporaryLoginFailure("temporary authentication failure")
        raise error.UnauthorizedLogin("authentication failed")


@implementer(IRealm)
class UserRealm:
    """Builds avatars from userdb information.

    Args:
        auth: the auth service (for :meth:`lookup_user`).
        avatar_factory: ``(user_info, interface) -> avatar`` or ``-> (avatar, logout)``;
            it may return a Deferred or be a coroutine function.
        interfaces: the interfaces this realm serves, in order of preference.
    """

    def __init__(self, auth, avatar_factory, interfaces=None):
        self._auth = auth
        self._factory = avatar_factory
        self._interfaces = tuple(interfaces) if interfaces else None

    def requestAvatar(self, avatarId, mind, *interfaces):
        """Return a Deferred firing with ``(interface, avatar, logout)``."""
        return defer.ensureDeferred(self._avatar(_text(avatarId), interfaces))

    async def _avatar(self, user, interfaces):
        interface = next((i for i in interfaces if self._interfaces is None or i in self._interfaces), None)
        if interface is None:
            raise NotImplementedError("no supported interface among %r" % (interfaces,))
        try:
            info = await self._auth.lookup_user(user)
        except AuthTemporaryError as err:
            raise TemporaryLoginFailure(str(err)) from None
        if info is None:
            raise error.UnauthorizedLogin("user %s not in userdb" % user)
        result = await defer.maybeDeferred(self._factory, info, interface)
        if isinstance(result, tuple):
            avatar, logout = result
        else:
            avatar, logout = result, getattr(result, "logout", None) or (lambda: None)
        return interface, avatar, logout


def make_portal(auth, avatar_factory, interfaces=None, service="imap"):
    """Return a ``Portal`` with a :class:`UserRealm` and an :class:`AuthServiceChecker`."""
    return Portal(UserRealm(auth, avatar_factory, interfaces), [AuthServiceChecker(auth, service)])
