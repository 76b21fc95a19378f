# -*- test-case-name: tests.smtpd.test_protocol -*-
"""The master.cf program ``smtpd``: SMTP listeners for smtp, submission and smtps.

SYNOPSIS
    ``smtp tcp:25``, ``submission tcp:587 -o ...``, ``smtps ssl:465 -o ...``
    in master.cf; :func:`make_service` is what :mod:`mailstack.app` calls.

DESCRIPTION
    One :class:`SMTPServer` per service holds what every connection of the
    service shares: its configuration (main.cf plus the service's ``-o``
    overrides), the queue and cleanup, the auth service, the lookup tables,
    TLS options for STARTTLS, and the per-client connection counts
    (``smtpd_client_connection_count_limit``, not applied to
    ``smtpd_client_event_limit_exceptions``); with ``process_min_avail``
    above 1 these are counted by the master's anvil
    (:mod:`mailstack.master.anvil`), one count per client over every
    process of the service.  The protocol is
    :mod:`mailstack.smtpd.protocol`.

    Restriction lists are checked when the service is built, so an unknown
    restriction stops startup instead of failing mail later.

PARAMETERS
    smtpd_client_connection_count_limit, smtpd_client_event_limit_exceptions,
    smtpd_peername_lookup, smtpd_delay_reject, smtpd_*_restrictions,
    smtpd_restriction_classes, fast_flush_domains, and everything
    :mod:`mailstack.smtpd.protocol` and :mod:`mailstack.cleanup` read.
"""

from twisted.internet import defer, threads
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger

from mailstack.smtpd import check
from mailstack.smtpd.context import AddressClasses, CheckContext, DomainList, in_networks, parse_networks
from mailstack.smtpd.protocol import SMTPServerProtocol, resolve_peer_name

log = Logger(namespace="mailstack.smtpd")

# The smallest reactor thread pool an SMTP service runs with (see make_service).
MIN_THREADS = 32

RESTRICTION_LISTS = {
    "CONNECT": "smtpd_client_restrictions",
    "HELO": "smtpd_helo_restrictions",
    "MAIL": "smtpd_sender_restrictions",
    "RCPT": ("smtpd_relay_restrictions", "smtpd_recipient_restrictions"),
    "DATA": "smtpd_data_restrictions",
    "END-OF-MESSAGE": "smtpd_end_of_data_restrictions",
}


class SMTPServer:
    """What the connections of one SMTP service share.

    Args:
        config: the service's configuration.
        reactor: the reactor (its clock drives timeouts and error delays).
        cleanup: a :class:`mailstack.cleanup.Cleanup`.
        tables: a :class:`mailstack.tables.registry.Tables`.
        auth: the :class:`~mailstack.auth.service.AuthService`, or None.
        tls_options: server TLS options for STARTTLS, or None.
        service_name: the master.cf service name, used in log lines.
        queue: the :class:`~mailstack.queue.MailQueue` (ETRN wakes it).
        counter: where per-client connections are counted when the service
            runs in several processes (:func:`mailstack.master.anvil.counter_for`);
            None counts in this object.

    Raises:
        ConfigError: for an unknown restriction or a bad network list.
    """

    def __init__(self, config, reactor, cleanup, tables, auth=None, tls_options=None,
                 service_name="smtpd", queue=None, counter=None):
        self.config = config
        self.reactor = reactor
        self.cleanup = cleanup
        self.tables = tables
        self.auth = auth
        self.tls_options = tls_options
        self.service_name = service_name
        self.queue = queue
        self.counter = counter
        self.classes = AddressClasses(config, tables, cleanup.rewriter, auth)
        self._networks = {}
        self._connections = {}
        self._fast_flush = DomainList(config["fast_flush_domains"], tables, parent_matches=True)
        for parameter in self._all_lists():
            check.validate(config, parameter)
        for parameter in ("mynetworks", "smtpd_client_event_limit_exceptions",
                          "smtpd_forbid_bare_newline_exclusions"):
            self.networks(parameter)

    def _all_lists(self):
        for value in RESTRICTION_LISTS.values():
            yield from (value if isinstance(value, tuple) else (value,))

    def networks(self, parameter):
        """Return the parsed networks of a network-list parameter (cached).

        Raises:
            ConfigError: for a word that is not a network.
        """
        try:
            return self._networks[parameter]
        except KeyError:
            pass
        from mailstack.config.maincf import ConfigError
        try:
            nets = parse_networks(self.config[parameter])
        except ValueError as err:
            raise ConfigError("%s: %s" % (parameter, err)) from None
        self._networks[parameter] = nets
        return nets

    def in_networks(self, address, parameter):
        """True when the client ``address`` is in the network list ``parameter``."""
        return in_networks(address, self.networks(parameter))

    def stage_lists(self, stage):
        """Return the restriction-list parameters evaluated at ``stage`` (honours smtpd_delay_reject)."""
        delay = self.config["smtpd_delay_reject"]
        if delay and stage in ("CONNECT", "HELO", "MAIL"):
            return ()
        if stage == "RCPT":
            names = RESTRICTION_LISTS["RCPT"]
            if delay:
                names = (RESTRICTION_LISTS["CONNECT"], RESTRICTION_LISTS["HELO"], RESTRICTION_LISTS["MAIL"]) + names
        else:
            names = (RESTRICTION_LISTS[stage],)
        return tuple(n for n in names if self.config[n])

    def list_stage(self, parameter, default):
        """Return the stage whose words a restriction list's rejects use (RCPT for relay/recipient lists)."""
        for stage, names in RESTRICTION_LISTS.items():
            if parameter == names or (isinstance(names, tuple) and parameter in names):
                return stage
        return default

    def check_context(self, session, stage, recipient=None):
        return CheckContext(self, session, stage, recipient)

    async def peer_name(self, address):
        """The client's verified reverse name, or "unknown" (``smtpd_peername_lookup = no``: always unknown)."""
        if not self.config["smtpd_peername_lookup"]:
            return "unknown"
        return await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                               resolve_peer_name, address)

    def admit(self, session):
        """Count a new connection; return a 421 reply when the client has too many, else None.

        With a ``counter`` that answers asynchronously (a worker process
        asking the master's anvil), return a Deferred firing with that.
        """
        address = session.client_address
        if self.counter is not None and not self._limited(address):
            return None  # nothing to enforce: spare the round trip to the master
        session._counted = True
        if self.counter is None:
            count = self._connections.get(address, 0) + 1
            self._connections[address] = count
        else:
            count = self.counter.connect(address)
            if isinstance(count, defer.Deferred):
                return count.addCallback(self._admit_count, session)
        return self._admit_count(count, session)

    def _limited(self, address):
        """Whether smtpd_client_connection_count_limit applies to the client ``address``."""
        return bool(self.config["smtpd_client_connection_count_limit"]) and not self.in_networks(
            address, "smtpd_client_event_limit_exceptions")

    def _admit_count(self, count, session):
        address = session.client_address
        limit = self.config["smtpd_client_connection_count_limit"]
        if limit and count > limit and not self.in_networks(address, "smtpd_client_event_limit_exceptions"):
            log.warn("Connection concurrency limit exceeded: {count} from {client} for service {service_name}",
                     count=count, client=session.peer, service_name=self.service_name,
                     service=self.service_name)
            return (421, "4.7.0", "%s Error: too many connections from %s" % (self.config["myhostname"], address))
        return None

    def release(self, session):
        """Forget a closed connection."""
        if not getattr(session, "_counted", False):
            return
        session._counted = False
        address = session.client_address
        if self.counter is not None:
            self.counter.disconnect(address)
            return
        count = self._connections.get(address, 1) - 1
        if count > 0:
            self._connections[address] = count
        else:
            self._connections.pop(address, None)

    def connection_count(self, address):
        return self._connections.get(address, 0)

    def fast_flush_allowed(self, domain):
        """Whether ETRN may ask for a queue run for ``domain`` (``fast_flush_domains``)."""
        return self._fast_flush.contains_now(domain)

    async def fast_flush(self, domain):
        """ETRN: make deferred mail for ``domain`` due now, as ``postqueue -s domain`` does.

        Returns:
            the number of deferred messages made due.
        """
        from mailstack.admin.queue import request_flush, site_messages
        queue = self.queue
        count = await queue.in_thread(lambda: request_flush(queue, site_messages(queue, domain)))
        queue.notify()
        log.info("ETRN {domain}: {count} deferred message(s) due now", domain=domain, count=count,
                 service=self.service_name)
        return count


class SMTPServerFactory(ServerFactory):
    """Builds one :class:`~mailstack.smtpd.protocol.SMTPServerProtocol` per connection."""

    noisy = False

    def __init__(self, server):
        self.server = server

    def buildProtocol(self, addr):
        proto = SMTPServerProtocol(self.server)
        proto.factory = self
        return proto


def build_server(ctx, config, service_name, tls_options=None, counter=None):
    """Return the :class:`SMTPServer` of a service from the process's shared components."""
    from mailstack.auth.service import auth_service
    from mailstack.cleanup import Cleanup
    from mailstack.queue import mail_queue
    from mailstack.tables.registry import tables_for
    tables = tables_for(ctx)
    queue = mail_queue(ctx)
    auth = auth_service(ctx)
    cleanup = Cleanup(config, queue, tables, ctx.reactor, auth=auth)
    return SMTPServer(config, ctx.reactor, cleanup, tables, auth=auth, tls_options=tls_options,
                      service_name=service_name, queue=queue, counter=counter)


def make_service(ctx, entry, config):
    """The master.cf entry point: a listening service for ``entry``.

    Raises:
        ConfigError: for configuration errors (restrictions, networks, TLS).
    """
    from mailstack import app
    from mailstack.config.maincf import ConfigError
    tls_options = None
    level = config["smtpd_tls_security_level"]
    if level in ("may", "encrypt") or entry.endpoint.startswith("ssl:"):
        tls_options = app.tls_options(config, "smtpd")
        if tls_options is None and level == "encrypt":
            raise ConfigError("%s: service %s: smtpd_tls_security_level = encrypt needs smtpd_tls_cert_file"
                              % (entry.where, entry.name))
        if tls_options is None and level == "may":
            log.warn("service {name}: no smtpd_tls_cert_file, STARTTLS is not offered", name=entry.name,
                     service=entry.name)
    # The pool runs password hashing, lookups in tables that do I/O, and,
    # where native AIO is unavailable (mailstack.util.aio), every queue
    # fsync: then each session waiting for its fsync holds a thread, so let
    # twenty or more sessions fsync in parallel (the disk is much faster so).
    if ctx.reactor.getThreadPool().max < MIN_THREADS:
        ctx.reactor.suggestThreadPoolSize(MIN_THREADS)
    from mailstack.master.anvil import counter_for
    server = build_server(ctx, config, entry.name, tls_options, counter_for(ctx, entry, config))
    return app.listener_service(ctx, entry, config, SMTPServerFactory(server))
