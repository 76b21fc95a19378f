# -*- test-case-name: tests.queue.test_service -*-
"""The ``qmgr`` master.cf program: the queue manager with its delivery agents.

``make_service(ctx, entry, config)`` returns a service that, when started,
builds the queue manager (:mod:`mailstack.queue.qmgr`) over the process's
shared queue, store, tables and auth service, with the transports:

=========  ==========================================================
local      :class:`mailstack.agents.local.LocalAgent` (``mydestination``)
virtual    :class:`mailstack.agents.virtual.VirtualAgent` (``virtual_mailbox_domains``)
smtp       :class:`mailstack.agents.smtp.SMTPAgent` (MX lookup, ``relayhost``)
relay      the same, for ``relay_domains``
error      :class:`mailstack.agents.simple.ErrorAgent`
discard    :class:`mailstack.agents.simple.DiscardAgent`
=========  ==========================================================

Mail resolved to a transport that is not built here (a name from
``transport_maps`` that mailstack does not know) is deferred with ``mail
transport unavailable`` and stays queued.

While running, the service listens on ``public/qmgr``
(:mod:`mailstack.queue.trigger`) so that other processes wake it.
Stopping the service waits for deliveries under way to finish; messages
still active are recovered from ``active/`` at the next start.

Parameters read: see :mod:`mailstack.queue.qmgr`, :mod:`mailstack.agents.local`,
:mod:`mailstack.agents.virtual`, :mod:`mailstack.bounce.notices` and
:mod:`mailstack.rewrite.resolve`.
"""

from dataclasses import dataclass
from typing import Callable

from twisted.application import service

from mailstack.agents.local import LocalAgent, qualified_users
from mailstack.agents.mailbox import StoreMailboxes
from mailstack.agents.simple import DiscardAgent, ErrorAgent
from mailstack.agents.smtp import SMTPAgent
from mailstack.agents.virtual import VirtualAgent
from mailstack.bounce.notices import Bouncer
from mailstack.queue import trigger
from mailstack.queue.qmgr import QueueManager
from mailstack.queue.store import mail_queue
from mailstack.rewrite.resolve import Resolver


@dataclass(frozen=True)
class Transport:
    """A delivery transport the queue manager can use.

    Attributes:
        name: the transport name (as in ``transport_maps`` and ``*_transport``).
        factory: ``(parts) -> agent``, ``parts`` being a :class:`_Parts`.
        doc: one line.
    """

    name: str
    factory: Callable
    doc: str


class _Parts:
    """What agents are built from: the process's shared components."""

    def __init__(self, ctx, config, queue, resolver):
        from mailstack.store.store import shared as shared_store
        from mailstack.tables.registry import tables_for
        self.ctx = ctx
        self.config = config
        self.queue = queue
        self.resolver = resolver
        self.tables = tables_for(ctx)
        self.mailboxes = StoreMailboxes(shared_store(ctx))
        self.users = _user_lookup(ctx, config)

    def maps(self, name):
        specs = self.config[name]
        return self.tables.maps(specs, name) if specs else None

    def local_domains(self):
        from mailstack.tables.maps import LocalDomains
        return LocalDomains(self.config, self.tables)


def _user_lookup(ctx, config):
    try:
        from mailstack.auth.service import auth_service
    except ImportError:
        return None
    auth = auth_service(ctx)

    async def lookup(name):
        return await auth.lookup_user(name)
    return lookup


TRANSPORTS = (
    Transport("local", lambda p: LocalAgent(p.config, p.ctx.reactor, p.queue, p.mailboxes, p.resolver,
                                            p.maps("alias_maps"), qualified_users(p.users, p.config["mydomain"])),
              "local delivery: aliases, .forward, maildir, commands, files"),
    Transport("virtual", lambda p: VirtualAgent(p.config, p.mailboxes, p.maps("virtual_mailbox_maps"), p.users),
              "virtual mailbox domains to maildir"),
    Transport("smtp", lambda p: SMTPAgent(p.config, p.ctx.reactor, name="smtp",
                                          generic_maps=p.maps("smtp_generic_maps"), is_local=p.local_domains(),
                                          sasl_password_maps=p.maps("smtp_sasl_password_maps")),
              "SMTP client: MX lookup or the next hop, STARTTLS, SMTP AUTH"),
    Transport("relay", lambda p: SMTPAgent(p.config, p.ctx.reactor, name="relay",
                                           generic_maps=p.maps("smtp_generic_maps"), is_local=p.local_domains(),
                                           sasl_password_maps=p.maps("smtp_sasl_password_maps")),
              "SMTP client for $relay_domains"),
    Transport("error", lambda p: ErrorAgent(), "always fail with the next-hop text"),
    Transport("discard", lambda p: DiscardAgent(), "always succeed, write nothing"),
)


def build_queue_manager(ctx, config):
    """Return a :class:`QueueManager` over ``ctx``'s shared components (not started)."""
    queue = mail_queue(ctx)
    from mailstack.tables.registry import tables_for
    transport_maps = config["transport_maps"]
    resolver = Resolver(config, tables_for(ctx).maps(transport_maps, "transport_maps") if transport_maps else None)
    parts = _Parts(ctx, config, queue, resolver)
    agents = {t.name: t.factory(parts) for t in TRANSPORTS}
    return QueueManager(queue, config, agents, resolver, Bouncer(queue, config, ctx.reactor), ctx.reactor)


class QueueManagerService(service.Service):
    """Runs the queue manager while the service runs.

    The queue manager and its agents are built when the service is made,
    so that a bad table or store setting stops startup with a
    configuration error instead of a traceback.
    """

    def __init__(self, ctx, config):
        self.ctx = ctx
        self.config = config
        self.qmgr = build_queue_manager(ctx, config)
        self._trigger = None
        ctx.shared("qmgr", lambda: self.qmgr)

    def startService(self):
        super().startService()
        self.qmgr.start()
        # Other processes (SMTP workers, sendmail -bs) wake us through public/qmgr.
        self._trigger = trigger.listen(self.ctx.reactor, self.qmgr.queue.directory, self.qmgr.wakeup)

    def stopService(self):
        super().stopService()
        trigger.unlink(self._trigger)
        self._trigger = None
        return self.qmgr.stop()


def make_service(ctx, entry, config):
    """The master.cf ``qmgr`` program.

    Raises:
        ConfigError: when a table, the store or the auth service cannot be set up.
    """
    return QueueManagerService(ctx, config)
