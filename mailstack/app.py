# -*- test-case-name: tests.test_app -*-
"""The root service: one child per master.cf line.

``make_service(config_directory)`` reads main.cf and master.cf, and for each
service line finds its *program* (smtpd, pop3d, imapd, qmgr, auth...) in
:data:`PROGRAMS`.  A program module exposes ``make_service(ctx, entry,
config)`` returning an ``IService``; listeners use :func:`listener_service`
so that endpoints, ``inet_interfaces`` and implicit TLS are handled in one
place.  A program whose module is not part of this build is reported at
startup ("not available") and its service is not started.

Shared components (the auth service, the mail store, the queue) live in
the :class:`ServerContext`; services ask for them with
``ctx.shared(key, factory)`` so that every service in the process uses one
instance.

A listener service of smtpd, pop3d or imapd may run in several processes
(``process_min_avail``, :mod:`mailstack.master.workers`): the master binds
the sockets and serves on them, and its workers adopt them.

Parameters read: ``process_min_avail``, ``inet_interfaces``, ``inet_protocols``,
``smtpd_tls_cert_file``/``smtpd_tls_key_file`` (SMTP services),
``ssl_cert``/``ssl_key`` (POP3/IMAP services), ``ssl_min_protocol``.
"""

import importlib
import importlib.util
import os
import socket

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints
from twisted.logger import ILogObserver, Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from mailstack.common import maillog
from mailstack.config import maincf, mastercf
from mailstack.config.maincf import ConfigError
from mailstack.util import tls

log = Logger(namespace="mailstack.master")

# program name -> module with make_service(ctx, entry, config)
PROGRAMS = {
    "smtpd": "mailstack.smtpd.service",
    "pop3d": "mailstack.pop3d.service",
    "imapd": "mailstack.imapd.service",
    "qmgr": "mailstack.queue.service",
    "pickup": "mailstack.queue.pickup",
    "auth": "mailstack.auth.socket",
}

# Programs whose TLS material is Dovecot's ssl_cert/ssl_key; the others use smtpd_tls_*.
_DOVECOT_TLS = ("pop3d", "imapd")

# Programs whose listeners may run in several processes (process_min_avail),
# and the endpoint types whose sockets workers may share.
MULTI_PROCESS_PROGRAMS = ("smtpd", "pop3d", "imapd")
_SHAREABLE_ENDPOINTS = ("tcp", "tcp6", "ssl")


class ServerContext:
    """What every service of one process shares.

    Attributes:
        reactor: the reactor services must use (never a global import).
        config: the main.cf configuration, without master.cf overrides.
        config_directory: where main.cf and master.cf were read.
        foreground: logging goes to standard output (``twistd -n``).
        verbose: debug events are logged.
        inherited: in a worker process (:mod:`mailstack.worker`), the
            listening sockets to adopt, as ``[(fd, family name)]`` in the
            order of :func:`endpoint_descriptions`; None in the master.
        control: in a worker, the channel to the master
            (:class:`mailstack.master.anvil.AnvilClient`); None in the master.
    """

    def __init__(self, reactor, config, config_directory, foreground=True, verbose=False, inherited=None,
                 control=None):
        self.reactor = reactor
        self.config = config
        self.config_directory = config_directory
        self.foreground = foreground
        self.verbose = verbose
        self.inherited = inherited
        self.control = control
        self._shared = {}

    def shared(self, key, factory):
        """Return the process-wide component ``key``, creating it with ``factory()`` once."""
        try:
            return self._shared[key]
        except KeyError:
            value = self._shared[key] = factory()
            return value


def program_module(program):
    """Return the module implementing ``program``, or None when it is not in this build.

    Raises:
        ConfigError: for a program name that mailstack does not know.
        ImportError: when the module exists but fails to import (a bug, not absence).
    """
    try:
        name = PROGRAMS[program]
    except KeyError:
        raise ConfigError("unknown program %r (known: %s)" % (program, ", ".join(sorted(PROGRAMS)))) from None
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


def tls_options(config, program):
    """Return server TLS options for ``program`` from ``config``, or None when no certificate is set.

    Raises:
        ConfigError: when the certificate or key cannot be used.
    """
    if program in _DOVECOT_TLS:
        cert, key, names = config["ssl_cert"], config["ssl_key"], ("ssl_cert", "ssl_key")
    else:
        cert, key = config["smtpd_tls_cert_file"], config["smtpd_tls_key_file"]
        names = ("smtpd_tls_cert_file", "smtpd_tls_key_file")
    if not cert:
        return None
    try:
        return tls.server_options(cert, key or cert, config["ssl_min_protocol"])
    except tls.TLSConfigError as err:
        raise ConfigError("%s/%s: %s" % (names[0], names[1], err)) from None


def _has_ipv6():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def _escape(address):
    return address.replace(":", r"\:")


def interface_addresses(config):
    """Return the addresses listeners bind to when an endpoint names no interface.

    ``all`` binds one dual-stack ``::`` socket where IPv6 works (it accepts
    IPv4 too on Linux) and ``0.0.0.0`` otherwise; ``loopback-only`` binds
    127.0.0.1 (and ::1); a list binds each address given.
    """
    words = [w.lower() for w in config["inet_interfaces"]]
    protocols = config["inet_protocols"]
    ipv6 = protocols in ("all", "ipv6") and _has_ipv6()
    if words in (["all"], []):
        return ["::"] if ipv6 else ["0.0.0.0"]
    if words == ["loopback-only"]:
        result = [] if protocols == "ipv6" else ["127.0.0.1"]
        return result + (["::1"] if ipv6 else [])
    return [w.strip("[]") for w in words]


# Twisted listens with a backlog of 50; a burst of connections (a mail storm,
# thousands of IMAP clients reconnecting) would be dropped by the kernel.
# An endpoint's own backlog=N wins.
DEFAULT_BACKLOG = 1024


def endpoint_descriptions(description, config):
    """Expand one master.cf endpoint into (description, implicit_tls) pairs, one per bind address."""
    kind, _, rest = description.partition(":")
    implicit_tls = kind == "ssl" and "privateKey=" not in rest
    if implicit_tls:
        kind = "tcp"
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in rest:
        rest += ":backlog=%d" % DEFAULT_BACKLOG
    if kind not in ("tcp", "tcp6", "ssl") or "interface=" in rest:
        return [("%s:%s" % (kind, rest), implicit_tls)]
    return [("%s:%s:interface=%s" % (kind, rest, _escape(addr)), implicit_tls)
            for addr in interface_addresses(config)]


def service_processes(entry, config):
    """Return how many processes serve ``entry``: ``process_min_avail`` for smtpd, pop3d and imapd, else 1.

    Only TCP listeners (``tcp:``, ``tcp6:``, ``ssl:``) are shared with
    workers: Twisted removes a unix socket's path when a port on it stops,
    so a worker stopping alone would take the master's path away.

    Raises:
        ConfigError: when ``-o process_min_avail`` above 1 is given to a
            service of another program or on another endpoint type (a
            main.cf value is ignored for them).
    """
    count = config["process_min_avail"]
    kind = (entry.endpoint or "").partition(":")[0]
    if entry.program in MULTI_PROCESS_PROGRAMS and kind in _SHAREABLE_ENDPOINTS:
        return count
    if count > 1 and any(s.name == "process_min_avail" for s in entry.overrides):
        if entry.program in MULTI_PROCESS_PROGRAMS:
            raise ConfigError("%s: process_min_avail: service %s listens on %s: only %s endpoints are "
                              "shared with worker processes" % (entry.where, entry.name, kind,
                                                                ", ".join(_SHAREABLE_ENDPOINTS)))
        raise ConfigError("%s: process_min_avail: service %s (%s) runs in the master process only "
                          "(only %s services may have several)"
                          % (entry.where, entry.name, entry.program, ", ".join(MULTI_PROCESS_PROGRAMS)))
    return 1


class AdoptedPortService(service.Service):
    """Listens on an inherited listening socket (a worker process's share of the master's port).

    Args:
        reactor: provides ``adoptStreamPort``.
        fd: the listening socket's descriptor (closed once adopted: the port has its own copy).
        family: ``inet``, ``inet6`` or ``unix``.
        factory: the protocol factory.
    """

    _FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "unix": socket.AF_UNIX}

    def __init__(self, reactor, fd, family, factory):
        self.reactor = reactor
        self.fd = fd
        self.family = self._FAMILIES[family]
        self.factory = factory
        self.port = None

    def startService(self):
        super().startService()
        self.port = self.reactor.adoptStreamPort(self.fd, self.family, self.factory)
        try:
            os.close(self.fd)
        except OSError:
            pass

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def listener_service(ctx, entry, config, factory):
    """Return a service listening on ``entry.endpoint`` with ``factory``.

    ``ssl:`` endpoints without their own ``privateKey=`` get implicit TLS
    with the certificate from main.cf; one endpoint may become several
    listeners when ``inet_interfaces`` lists several addresses.  With
    ``process_min_avail`` above 1 (smtpd, pop3d, imapd), the service also
    runs worker processes on the same sockets
    (:class:`mailstack.master.workers.WorkerPool`); in a worker
    (``ctx.inherited`` set) the sockets are adopted instead of bound.

    Raises:
        ConfigError: when TLS is asked for but no usable certificate is configured.
    """
    factory.noisy = False
    parent = service.MultiService()
    parent.setName(entry.name)
    descriptions = endpoint_descriptions(entry.endpoint, config)
    if ctx.inherited is not None and len(ctx.inherited) != len(descriptions):
        raise ConfigError("%s: service %s: the master passed %d socket(s) for %d listener(s) "
                          "(master.cf changed since the master started?)"
                          % (entry.where, entry.name, len(ctx.inherited), len(descriptions)))
    for index, (description, implicit_tls) in enumerate(descriptions):
        wrapped = factory
        if implicit_tls:
            options = tls_options(config, entry.program)
            if options is None:
                raise ConfigError("%s: service %s uses ssl: but no certificate is configured "
                                  "(set smtpd_tls_cert_file or ssl_cert in main.cf)" % (entry.where, entry.name))
            wrapped = TLSMemoryBIOFactory(options, False, factory)
            wrapped.noisy = False
        if ctx.inherited is not None:
            fd, family = ctx.inherited[index]
            AdoptedPortService(ctx.reactor, fd, family, wrapped).setServiceParent(parent)
            continue
        try:
            endpoint = endpoints.serverFromString(ctx.reactor, description)
        except (ValueError, TypeError, KeyError) as err:
            raise ConfigError("%s: bad endpoint %r: %s" % (entry.where, entry.endpoint, err)) from None
        child = StreamServerEndpointService(endpoint, wrapped)
        child._raiseSynchronously = True
        child.setServiceParent(parent)
    processes = service_processes(entry, config)
    if processes > 1 and ctx.inherited is None:
        from mailstack.master.workers import WorkerPool
        WorkerPool(ctx, entry, list(parent), processes - 1,
                   channel_factory=_channel_factory(ctx, entry)).setServiceParent(parent)
    return parent


def _channel_factory(ctx, entry):
    """The master's end of a worker's control channel: the anvil server (per-client counts)."""
    from mailstack.master.anvil import AnvilServer, anvil
    counter = anvil(ctx)
    return lambda: AnvilServer(counter)


class MailstackService(service.MultiService):
    """The root service; installs the maillog observer on the twistd application."""

    def __init__(self, ctx, observer=None):
        super().__init__()
        self.ctx = ctx
        self._observer = observer

    def setServiceParent(self, parent):
        # twistd's AppLogger uses the application's ILogObserver component
        # when it has one: that is how our maillog format replaces its own.
        if self._observer is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self._observer)
        return super().setServiceParent(parent)

    def startService(self):
        for warning in self.ctx.config.warnings:
            log.warn("{warning}", warning=warning)
        super().startService()
        # Logged from the running reactor, once signal handlers are in place.
        self.ctx.reactor.callLater(0, log.info, "daemon started -- version {version}, configuration {directory}",
                                   version=_version(), directory=self.ctx.config_directory)

    def stopService(self):
        log.info("terminating on signal")
        return super().stopService()


def _version():
    from mailstack import __version__
    return __version__


def make_service(config_directory, reactor=None, foreground=True, verbose=False):
    """Build the root service from ``config_directory``.

    Args:
        config_directory: holds main.cf and master.cf.
        reactor: the reactor to use; the global one when None.
        foreground: log to standard output (``twistd -n``) instead of the log file.
        verbose: include debug events in the log.

    Raises:
        ConfigError: for any configuration error, as ``file:line: reason``.
    """
    if reactor is None:
        from twisted.internet import reactor
    config = maincf.load(config_directory)
    entries = mastercf.load(config_directory)
    ctx = ServerContext(reactor, config, config_directory, foreground=foreground, verbose=verbose)
    root = MailstackService(ctx, maillog.observer_for(config, foreground, verbose, reactor))
    for entry in entries:
        try:
            module = program_module(entry.program)
        except ConfigError as err:
            raise ConfigError("%s: %s" % (entry.where, err)) from None
        where = entry.endpoint or "internal"
        if module is None:
            log.warn("service {name} ({program}) on {where}: not available in this build, not started",
                     name=entry.name, program=entry.program, where=where)
            continue
        service_config = config.with_overrides(entry.overrides) if entry.overrides else config
        processes = service_processes(entry, service_config)
        child = module.make_service(ctx, entry, service_config)
        child.setName(entry.name)
        child.setServiceParent(root)
        if processes > 1:
            where += " (%d processes)" % processes
        log.info("service {name} ({program}) on {where}", name=entry.name, program=entry.program, where=where)
    return root
