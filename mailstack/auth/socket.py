# -*- test-case-name: tests.auth.test_socket -*-
"""The master.cf program ``auth``: Dovecot's auth socket, answered by mailstack.

A real Postfix (``smtpd_sasl_type = dovecot``), Exim or any other client
of Dovecot's authentication protocol can authenticate its users against
mailstack's passdb through this service.  master.cf::

    # name  endpoint                                   program
    auth    unix:/var/spool/postfix/private/auth:mode=0666   auth
    auth    tcp:12345:interface=127.0.0.1              auth

and in Postfix's main.cf::

    smtpd_sasl_auth_enable = yes
    smtpd_sasl_type = dovecot
    smtpd_sasl_path = private/auth       # or inet:127.0.0.1:12345

Postfix's daemons reach ``smtpd_sasl_path`` relative to its queue
directory after dropping privileges, so a Unix socket belongs in
``$queue_directory/private/`` (a directory only ``postfix`` and root can
enter), with a mode that lets the ``postfix`` user connect; that is how
Dovecot's own ``unix_listener /var/spool/postfix/private/auth`` is set up.
A TCP listener has no access control of its own: bind it to loopback or a
private network only.

The protocol itself is :mod:`mailstack.auth.dovecot_protocol`.  Every
service of the process shares one :class:`~mailstack.auth.service.AuthService`
(so the failure delay of a client address counts across SMTP, IMAP and
POP3), unless the master.cf line has ``-o`` overrides: then this service
gets an AuthService of its own built from the overridden configuration,
e.g. ``-o auth_mechanisms=plain,login,cram-md5`` or ``-o
disable_plaintext_auth=no`` (leave the TLS decision entirely to Postfix's
``smtpd_tls_auth_only``; by default a plaintext mechanism is refused for a
client that is neither on TLS, nor on loopback, nor in
``login_trusted_networks``, as for IMAP and POP3).

Parameters read: those of the auth service (``passdb``, ``auth_mechanisms``,
``disable_plaintext_auth``, ``login_trusted_networks``, ...); see
:mod:`mailstack.auth.service`.

Log lines (``mailstack/auth``)::

    smtp(joe@example.com,192.0.2.1,<1.1>): authenticated, method=PLAIN, lip=192.0.2.2, TLS
    warning: BUG: Authentication client 4242 (cuid=3) sent unknown command 'FOO'; disconnecting
"""

from mailstack.app import listener_service
from mailstack.auth.dovecot_protocol import DovecotAuthFactory
from mailstack.auth.service import AuthService, auth_service
from mailstack.config.maincf import ConfigError


def make_service(ctx, entry, config):
    """Return the listening service for master.cf ``entry`` (a Dovecot auth socket).

    Args:
        ctx: the :class:`~mailstack.app.ServerContext`.
        entry: the master.cf :class:`~mailstack.config.mastercf.ServiceEntry`.
        config: main.cf with this entry's ``-o`` overrides applied.

    Raises:
        ConfigError: for a missing endpoint or an unusable auth configuration.
    """
    if not entry.endpoint:
        raise ConfigError("%s: service %s needs an endpoint (unix:PATH:mode=0666 or tcp:PORT)"
                          % (entry.where, entry.name))
    if entry.overrides:
        auth = AuthService(config, ctx.reactor)
    else:
        auth = auth_service(ctx)
    return listener_service(ctx, entry, config, DovecotAuthFactory(auth, ctx.reactor))
