# -*- test-case-name: tests.smtpd.test_relay -*-
"""What restrictions look at: the client, the envelope, and which domains are ours.

:class:`AddressClasses` answers the two questions relay control asks
(Postfix ``resolve_local``, ``smtpd_check.c``):

- *Is this recipient an authorised destination?*  Its domain (after
  trivial-rewrite, so ``user%remote@ourdomain`` is judged as
  ``user@remote``) is in ``mydestination``, ``virtual_alias_domains``,
  ``virtual_mailbox_domains`` or ``relay_domains``.  ``relay_domains``
  also matches subdomains (Postfix ``parent_domain_matches_subdomains``);
  an entry ``.example.com`` matches subdomains in every list; an entry
  ``type:name`` is a table looked up with the domain.
- *Is this recipient listed?*  (``smtpd_reject_unlisted_recipient``,
  ``reject_unlisted_recipient``)  By address class: local domains check
  ``local_recipient_maps``, virtual alias domains ``virtual_alias_maps``,
  virtual mailbox domains ``virtual_mailbox_maps`` and the auth layer's
  userdb, relay domains ``relay_recipient_maps``.  An address found in
  ``virtual_alias_maps`` is valid in any class.  ``relocated_maps``
  entries are refused with ``550 5.1.6 ... User has moved to NEW``.  A
  lookup that cannot answer gives ``451 4.3.0 Temporary lookup failure``.

:class:`CheckContext` is the per-request view restrictions receive.

Parameters read: ``mynetworks``, ``mydestination``, ``relay_domains``,
``virtual_alias_domains``, ``virtual_mailbox_domains``,
``local_recipient_maps``, ``virtual_alias_maps``, ``virtual_mailbox_maps``,
``relay_recipient_maps``, ``relocated_maps``, ``unknown_local_recipient_reject_code``,
``unknown_virtual_alias_reject_code``, ``unknown_virtual_mailbox_reject_code``,
``unknown_relay_recipient_reject_code``.
"""

import ipaddress

from twisted.logger import Logger
from mailstack.common.address import split_address
from mailstack.common.reply import reject
from mailstack.smtpd.check import Verdict, stage_reject
from mailstack.tables.base import TableTemporaryError
from mailstack.tables.maps import LocalDomains

log = Logger(namespace="mailstack.smtpd")


def parse_networks(words):
    """Turn ``mynetworks``-style words into ``ipaddress`` networks (``[::1]/128`` accepted).

    Raises:
        ValueError: for a word that is not an address or network.
    """
    networks = []
    for word in words:
        text = word.replace("[", "").replace("]", "")
        networks.append(ipaddress.ip_network(text, strict=False))
    return tuple(networks)


def in_networks(address, networks):
    """Return True when the IP ``address`` (text) is inside one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


class DomainList:
    """One domain-list parameter: literal domains, ``.subdomain`` patterns and tables.

    Args:
        words: the parameter's list value.
        tables: a :class:`mailstack.tables.registry.Tables` for ``type:name`` entries.
        parent_matches: a literal ``example.com`` also matches ``sub.example.com``.
    """

    def __init__(self, words, tables, parent_matches=False):
        self._exact = set()
        self._suffixes = []
        self._tables = []
        for word in words:
            if ":" in word and not word.startswith("["):
                self._tables.append(tables.open(word))
            elif word.startswith("."):
                self._suffixes.append(word.lower())
            else:
                self._exact.add(word.lower().rstrip("."))
                if parent_matches:
                    self._suffixes.append("." + word.lower().rstrip("."))

    def __bool__(self):
        return bool(self._exact or self._suffixes or self._tables)

    async def contains(self, domain):
        """Return True when ``domain`` is in the list.

        Raises:
            TableTemporaryError: when a table cannot answer.
        """
        domain = domain.lower().rstrip(".")
        if domain in self._exact or any(domain.endswith(s) for s in self._suffixes):
            return True
        for table in self._tables:
            if await table.lookup(domain) is not None:
                return True
        return False

    def contains_now(self, domain):
        """Like :meth:`contains` for literal entries only (no table lookups)."""
        domain = domain.lower().rstrip(".")
        return domain in self._exact or any(domain.endswith(s) for s in self._suffixes)


class AddressClasses:
    """Domain classes and recipient validation for one service's configuration.

    Args:
        config: the service's :class:`~mailstack.config.maincf.Config`.
        tables: the process's :class:`~mailstack.tables.registry.Tables`.
        rewriter: a :class:`mailstack.cleanup.rewrite.AddressRewriter` (trivial-rewrite).
        auth: the :class:`~mailstack.auth.service.AuthService`, or None.
    """

    def __init__(self, config, tables, rewriter, auth=None):
        self.config = config
        self.rewriter = rewriter
        self.auth = auth
        self.local = DomainList(config["mydestination"], tables)
        self.virtual_alias = DomainList(config["virtual_alias_domains"], tables)
        self.virtual_mailbox = DomainList(config["virtual_mailbox_domains"], tables)
        self.relay = DomainList(config["relay_domains"], tables, parent_matches=True)
        self.maps = {name: tables.maps(config[name], name) for name in (
            "local_recipient_maps", "virtual_alias_maps", "virtual_mailbox_maps",
            "relay_recipient_maps", "relocated_maps")}
        self._is_local = LocalDomains(config, tables)
        self._delimiters = config["recipient_delimiter"]

    async def _find(self, name, address):
        """Search the map list ``name`` for ``address`` in virtual(5) order; return the value or None."""
        maps = self.maps[name]
        if not maps:
            return None
        match = await maps.find_address(address, "virtual", self._delimiters, self._is_local)
        return match.value if match is not None else None

    async def classify(self, address):
        """Return the address class of ``address`` after trivial-rewrite.

        Returns:
            ``(class, rewritten)`` where class is ``"local"``, ``"virtual_alias"``,
            ``"virtual_mailbox"``, ``"relay"`` or ``"default"`` (somebody else's).
        """
        address = self.rewriter.trivial(address)
        domain = split_address(address)[1]
        for name in ("local", "virtual_alias", "virtual_mailbox", "relay"):
            if await getattr(self, name).contains(domain):
                return name, address
        return "default", address

    async def is_auth_destination(self, address):
        """True when mail for ``address`` may be accepted from anybody (not relaying)."""
        kind, _ = await self.classify(address)
        return kind != "default"

    async def unlisted(self, ctx, address, stage="RCPT"):
        """Return a reject :class:`~mailstack.smtpd.check.Verdict` for an unknown recipient, or None."""
        try:
            kind, rewritten = await self.classify(address)
            moved = await self._find("relocated_maps", rewritten)
            if moved is not None:
                return stage_reject(ctx, 550, "5.1.6", "User has moved to %s" % moved, stage)
            if kind == "default":
                return None
            if await self._find("virtual_alias_maps", rewritten) is not None:
                return None
            if kind == "local":
                if not self.maps["local_recipient_maps"] or await self._find("local_recipient_maps", rewritten):
                    return None
                return self._unknown(ctx, stage, "unknown_local_recipient_reject_code", "local recipient table")
            if kind == "virtual_alias":
                return self._unknown(ctx, stage, "unknown_virtual_alias_reject_code", "virtual alias table")
            if kind == "virtual_mailbox":
                if await self._find("virtual_mailbox_maps", rewritten) is not None:
                    return None
                if self.auth is not None and await self.auth.lookup_user(rewritten) is not None:
                    return None
                return self._unknown(ctx, stage, "unknown_virtual_mailbox_reject_code", "virtual mailbox table")
            if not self.maps["relay_recipient_maps"] or await self._find("relay_recipient_maps", rewritten):
                return None
            return self._unknown(ctx, stage, "unknown_relay_recipient_reject_code", "relay recipient table")
        except TableTemporaryError as err:
            log.warn("{address}: lookup error: {err}", address=address, err=err)
            subject = "<%s>" % address
            return Verdict("DEFER", reject(451, "4.3.0", "%s: Temporary lookup failure" % subject))

    def _unknown(self, ctx, stage, code_param, table):
        return stage_reject(ctx, self.config[code_param], "5.1.1", "User unknown in %s" % table, stage)


class CheckContext:
    """The facts of one request, as restrictions see them.

    Attributes:
        config, stage, client_name, client_address, helo, sender (None before MAIL),
        recipient (None outside RCPT), sasl_username, proto.
    """

    def __init__(self, server, session, stage, recipient=None):
        self.server = server
        self.config = session.config
        self.stage = stage
        self.client_name = session.client_name
        self.client_address = session.client_address
        self.helo = session.helo
        self.sender = session.sender
        self.recipient = recipient
        self.sasl_username = session.sasl_username
        self.proto = session.proto

    def in_mynetworks(self):
        return self.server.in_networks(self.client_address, "mynetworks")

    async def is_auth_destination(self, address):
        return await self.server.classes.is_auth_destination(address)

    async def unlisted_recipient(self, address, stage=None):
        """Return a reject verdict when ``address`` is not a known recipient, else None."""
        saved = self.recipient
        if stage is None or stage == "RCPT":
            self.recipient = address
        try:
            return await self.server.classes.unlisted(self, address, stage or self.stage)
        finally:
            self.recipient = saved
