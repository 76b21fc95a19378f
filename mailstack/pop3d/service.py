# -*- test-case-name: tests.pop3d.test_service -*-
"""pop3d: the master.cf program for the ``pop3`` and ``pop3s`` services.

``pop3  tcp:110`` runs plain POP3 with STLS (when a certificate is
configured); ``pop3s  ssl:995`` runs POP3 inside implicit TLS, set up by
:func:`mailstack.app.listener_service`.  Both share the process's auth
service, mail store and POP3 session locks, so a second POP3 session of a
user is refused whichever service it comes through.

Parameters read: ``mail_name``, ``ssl_cert``, ``ssl_key``,
``ssl_min_protocol``, ``disable_plaintext_auth``, ``pop3_client_timeout``,
``pop3_uidl_format``, ``pop3d_enable_apop``, plus those of the auth service
and the store.
"""

from mailstack import app
from mailstack.auth.service import AuthService, auth_service
from mailstack.config.maincf import ConfigError
from mailstack.pop3d.lock import SessionLocks
from mailstack.pop3d.maildrop import MaildropOpener
from mailstack.pop3d.protocol import POP3Factory, POP3Settings
from mailstack.pop3d.uidl import UIDLFormat, UIDLFormatError
from mailstack.store import store as store_mod

PARAMS = ("mail_name", "ssl_cert", "ssl_key", "ssl_min_protocol", "disable_plaintext_auth",
          "pop3_client_timeout", "pop3_uidl_format", "pop3d_enable_apop")


def _where(config, name):
    setting = config.setting(name)
    return setting.where if setting is not None else "main.cf"


def settings_for(entry_name, config, program="pop3d", implicit_tls=False):
    """Return the :class:`POP3Settings` of one service.

    Raises:
        ConfigError: for a bad ``pop3_uidl_format`` or unusable TLS files.
    """
    try:
        uidl_format = UIDLFormat(config["pop3_uidl_format"])
    except UIDLFormatError as err:
        raise ConfigError("%s: %s" % (_where(config, "pop3_uidl_format"), err)) from None
    # STLS needs a certificate; on an implicit-TLS service it is never offered.
    tls_options = None if implicit_tls else app.tls_options(config, program)
    return POP3Settings(
        service=entry_name,
        greeting="%s ready." % config["mail_name"],
        tls_options=tls_options,
        plaintext_insecure=not config["disable_plaintext_auth"],
        idle_timeout=config["pop3_client_timeout"],
        uidl_format=uidl_format,
        apop=config["pop3d_enable_apop"],
        hostname=config["myhostname"],
    )


def make_service(ctx, entry, config):
    """Return the listener service of a ``pop3``/``pop3s`` master.cf entry."""
    implicit_tls = any(tls for _, tls in app.endpoint_descriptions(entry.endpoint, config))
    settings = settings_for(entry.name, config, entry.program, implicit_tls)
    store = store_mod.shared(ctx)
    opener = MaildropOpener(store, settings.uidl_format)
    locks = ctx.shared("pop3d.locks", SessionLocks)
    if entry.overrides:
        # -o settings may change auth parameters (disable_plaintext_auth...): this
        # service then gets an auth service of its own, as the auth socket does.
        auth = ctx.shared(("auth", entry.name), lambda: AuthService(config, ctx.reactor))
    else:
        auth = auth_service(ctx)
    factory = POP3Factory(settings, auth, opener, locks, ctx.reactor)
    return app.listener_service(ctx, entry, config, factory)
