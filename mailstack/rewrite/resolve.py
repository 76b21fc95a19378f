# -*- test-case-name: tests.queue.test_resolve -*-
"""Resolve a recipient to (transport, nexthop, recipient), as Postfix's trivial-rewrite.

The queue manager asks this for every recipient of a message it activates.
The order is Postfix's ``resolve_clnt``/``transport(5)``:

1. ``transport_maps``: the full address, then ``user@domain`` without its
   ``recipient_delimiter`` extension, then the domain, then each parent
   domain as ``.parent``, then ``*``.  A value ``transport:nexthop`` wins;
   an empty part keeps what the following steps decide.
2. a domain in ``mydestination`` (or no domain) → ``local_transport``
   (``local:$myhostname``).
3. a domain in ``virtual_alias_domains`` that is not also a mailbox domain
   → ``error`` (the address survived virtual alias expansion, so it has no
   mailbox: "User unknown in virtual alias table").
4. a domain in ``virtual_mailbox_domains`` → ``virtual_transport``.
5. a domain in ``relay_domains`` (sub-domains included) → ``relay_transport``,
   next hop ``relayhost`` or the domain.
6. anything else → ``default_transport`` (``smtp``), next hop ``relayhost``
   or the domain.

Parameters read: ``transport_maps``, ``mydestination``, ``myhostname``,
``virtual_alias_domains``, ``virtual_mailbox_domains``, ``relay_domains``,
``relayhost``, ``recipient_delimiter``, ``local_transport``,
``virtual_transport``, ``relay_transport``, ``default_transport``.
"""

from dataclasses import dataclass

PARAMS = ("transport_maps", "mydestination", "myhostname", "virtual_alias_domains",
          "virtual_mailbox_domains", "relay_domains", "relayhost", "recipient_delimiter",
          "local_transport", "virtual_transport", "relay_transport", "default_transport")


@dataclass(frozen=True)
class Resolution:
    """Where a recipient goes.

    Attributes:
        transport: the delivery agent (local, virtual, smtp, relay, error, discard, hold).
        nexthop: its argument: a host, a domain, or the error text for ``error``.
        recipient: the address to deliver to.
    """

    transport: str
    nexthop: str
    recipient: str


def split_address(address):
    """Return (local part, domain) with the domain lower-cased; domain is "" when absent."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.lower().rstrip(".")


def _split_transport(value):
    transport, _, nexthop = value.strip().partition(":")
    return transport.strip(), nexthop.strip()


def _in_domains(domain, domains, parents):
    for entry in domains:
        entry = entry.lower()
        if entry.startswith("."):
            if domain.endswith(entry):
                return True
        elif domain == entry or (parents and domain.endswith("." + entry)):
            return True
    return False


class Resolver:
    """Resolve recipients with one configuration.

    Args:
        config: the main.cf :class:`~mailstack.config.maincf.Config`.
        transport_maps: an object with ``lookup(key) -> Deferred(str or None)``
            (a :mod:`mailstack.tables` search list), or None for no table.
    """

    def __init__(self, config, transport_maps=None):
        self._config = config
        self._maps = transport_maps
        self._mydestination = [d.lower() for d in config["mydestination"]]
        self._myhostname = config["myhostname"].lower()
        self._alias_domains = [d for d in config["virtual_alias_domains"] if ":" not in d]
        self._mailbox_domains = [d for d in config["virtual_mailbox_domains"] if ":" not in d]
        self._relay_domains = [d for d in config["relay_domains"] if ":" not in d]
        self._delimiter = config["recipient_delimiter"]

    def is_local_domain(self, domain):
        """Return True when ``domain`` is one of ``mydestination`` (or empty)."""
        return not domain or _in_domains(domain.lower(), self._mydestination, False)

    def is_virtual_domain(self, domain):
        """Return True when ``domain`` is one of ``virtual_mailbox_domains``."""
        return _in_domains(domain.lower(), self._mailbox_domains, False)

    def _map_keys(self, address):
        local, domain = split_address(address)
        keys = [address.lower()]
        if self._delimiter:
            for delim in self._delimiter:
                if delim in local:
                    keys.append((local.split(delim, 1)[0] + ("@" + domain if domain else "")).lower())
                    break
        if domain:
            keys.append(domain)
            labels = domain.split(".")
            keys.extend("." + ".".join(labels[i:]) for i in range(1, len(labels)))
        keys.append("*")
        return keys

    async def _transport_map(self, address):
        if self._maps is None:
            return None
        for key in self._map_keys(address):
            value = await self._maps.lookup(key)
            if value is not None:
                return _split_transport(value)
        return None

    def _default(self, address):
        config = self._config
        _, domain = split_address(address)
        if self.is_local_domain(domain):
            transport, nexthop = _split_transport(config["local_transport"])
            return transport or "local", nexthop or self._myhostname
        if _in_domains(domain, self._alias_domains, False) and not self.is_virtual_domain(domain):
            return "error", "5.1.1 User unknown in virtual alias table"
        if self.is_virtual_domain(domain):
            transport, nexthop = _split_transport(config["virtual_transport"])
            return transport or "virtual", nexthop or domain
        relayhost = config["relayhost"]
        if _in_domains(domain, self._relay_domains, True):
            transport, nexthop = _split_transport(config["relay_transport"])
            return transport or "relay", nexthop or relayhost or domain
        transport, nexthop = _split_transport(config["default_transport"])
        return transport or "smtp", nexthop or relayhost or domain

    async def resolve(self, address):
        """Return the :class:`Resolution` of ``address``.

        Raises:
            Exception: whatever a transport table lookup raises (a temporary
                failure: the queue manager defers the recipient).
        """
        transport, nexthop = self._default(address)
        mapped = await self._transport_map(address)
        if mapped is not None:
            map_transport, map_nexthop = mapped
            if map_transport:
                transport = map_transport
                if not map_nexthop and transport not in ("local", "virtual"):
                    nexthop = split_address(address)[1] or nexthop
            if map_nexthop:
                nexthop = map_nexthop
        return Resolution(transport, nexthop, address)
