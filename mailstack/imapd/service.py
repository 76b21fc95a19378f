# -*- test-case-name: tests.imapd.test_service -*-
"""The ``imapd`` master.cf program: IMAP4rev1 (``imap``, STARTTLS) and IMAPS (``imaps``, implicit TLS).

``make_service(ctx, entry, config)`` builds the listener through
:func:`mailstack.app.listener_service`; an ``ssl:`` endpoint gets implicit
TLS there, and a plain one offers STARTTLS when ``ssl_cert`` is set.
Sessions authenticate through the process-wide auth service
(:func:`mailstack.auth.service.auth_service`) and open the user's maildir
through the process-wide store (:func:`mailstack.store.store.shared`): the
userdb's ``mail`` field, else ``mail_location``.

Parameters read (PARAMS): ``imap_idle_timeout``, ``imap_max_line_length``,
``imapd_login_timeout``, ``imapd_idle_notify_interval``,
``imapd_max_auth_attempts``, ``message_size_limit``,
``disable_plaintext_auth``, ``ssl_cert``, ``ssl_key``, ``ssl_min_protocol``;
through the auth service and the store, theirs.
"""

import itertools

from twisted.internet import protocol
from twisted.logger import Logger

from mailstack import app
from mailstack.auth.service import AuthRequest, AuthTemporaryError, UnknownMechanism, auth_service
from mailstack.imapd.cache import HEADER_CACHE_BYTES, StructureCache
from mailstack.imapd.server import IMAPServer
from mailstack.store import store as mailstore
from mailstack.store.errors import StoreError

log = Logger(namespace="mailstack.imapd")

PARAMS = ("imap_idle_timeout", "imap_max_line_length", "imapd_login_timeout", "imapd_idle_notify_interval",
          "imapd_max_auth_attempts", "message_size_limit", "disable_plaintext_auth", "ssl_cert", "ssl_key",
          "ssl_min_protocol")

_session_ids = itertools.count(1)


class IMAPFactory(protocol.Factory):
    """Builds :class:`IMAPServer` sessions and holds what they share.

    Attributes:
        config: the service's configuration (main.cf plus ``-o`` overrides).
        reactor: the reactor.
        service_name: the master.cf service name (log tag).
        tls_options: server TLS options for STARTTLS, or None.
        auth: the :class:`~mailstack.auth.service.AuthService`.
        store: the :class:`~mailstack.store.store.MailStore`.
        sessions: the open sessions.
        structure_cache: encoded ENVELOPE/BODYSTRUCTURE per message
            (:class:`~mailstack.imapd.cache.StructureCache`).
        header_cache: header blocks for header SEARCH, bounded apart so
            that searches never evict structures (same class).
    """

    UnknownMechanism = UnknownMechanism

    def __init__(self, reactor, config, auth, store, service_name="imap", tls_options=None):
        self.reactor = reactor
        self.config = config
        self.auth = auth
        self.store = store
        self.service_name = service_name
        self.tls_options = tls_options
        self.sessions = set()
        self.structure_cache = StructureCache()
        self.header_cache = StructureCache(HEADER_CACHE_BYTES)

    def buildProtocol(self, addr):
        return IMAPServer(self)

    def session_opened(self, session):
        session.session_id = "imap-%d" % next(_session_ids)
        self.sessions.add(session)

    def session_closed(self, session):
        self.sessions.discard(session)

    def mechanisms(self, secure):
        """Return the SASL mechanisms to offer (upper case)."""
        return self.auth.mechanisms(secure)

    def is_secure(self, remote_ip, tls):
        return self.auth.is_secure_connection(remote_ip, tls)

    def auth_request(self, session):
        """Return the :class:`AuthRequest` describing ``session``."""
        return AuthRequest(service="imap", remote_ip=session.remote_ip, local_ip=session.local_ip,
                           secure=session.secure, session=session.session_id)

    async def open_account(self, user):
        """Return the store :class:`~mailstack.store.mailbox.Mailbox` of ``user``, created on first use.

        Raises:
            LookupError: when the userdb does not know the user or cannot answer,
                or the mail location is unusable.
        """
        try:
            info = await self.auth.lookup_user(user)
        except AuthTemporaryError as err:
            raise LookupError("userdb failed: %s" % err) from None
        if info is None:
            raise LookupError("user %s unknown to the userdb" % user)
        try:
            mailbox = self.store.mailbox(info.user, info.home, info.mail or None)
            await self.store.run(mailbox.ensure)
        except (StoreError, OSError, ValueError) as err:
            log.error("imap({user}): cannot open mailbox: {error}", user=user, error=err)
            raise LookupError(str(err)) from None
        return mailbox


def make_service(ctx, entry, config):
    """Return the listening service for one master.cf ``imapd`` line."""
    factory = IMAPFactory(ctx.reactor, config, auth_service(ctx), mailstore.shared(ctx),
                          service_name=entry.name, tls_options=app.tls_options(config, "imapd"))
    return app.listener_service(ctx, entry, config, factory)
