# -*- test-case-name: tests.cleanup.test_rewrite -*-
"""Envelope address rewriting, in Postfix's order (cleanup(8), ADDRESS_REWRITING_README).

For every message, before the SMTP server answers 250:

1. **trivial-rewrite** (:meth:`AddressRewriter.trivial`): a source route
   is already gone (RFC 5321 §4.1.1.3); ``site!user`` becomes
   ``user@site`` (``swap_bangpath``); ``user%domain`` becomes
   ``user@domain``, also when it arrived as ``user%domain@local-domain``
   (``allow_percent_hack``); ``user`` becomes ``user@$myorigin``
   (``append_at_myorigin``); ``user@host`` becomes
   ``user@host.$mydomain`` (``append_dot_mydomain``); a trailing dot is
   removed.
2. **canonical mapping** (:meth:`AddressRewriter.canonical`):
   ``sender_canonical_maps`` or ``recipient_canonical_maps``, then
   ``canonical_maps``, searched in virtual(5) order; ``@domain @other``
   moves the domain and keeps the user; an unmatched address extension is
   kept (``propagate_unmatched_extensions``).
3. **masquerading** (:meth:`AddressRewriter.masquerade`):
   ``masquerade_domains`` strips subdomains (``!domain`` excludes),
   except for the local parts in ``masquerade_exceptions``, for the
   address classes in ``masquerade_classes`` (envelope sender by default,
   not envelope recipients).
4. **virtual aliasing** (:meth:`AddressRewriter.virtual`): recursive,
   loop-safe expansion through ``virtual_alias_maps``; an address whose
   result lists itself is kept; an address met again below itself is a
   loop and is delivered as it is; past
   ``virtual_alias_recursion_limit`` or ``virtual_alias_expansion_limit``
   the message is deferred (``451 4.3.0``), as Postfix defers it.
5. **headers** (:meth:`AddressRewriter.header_address`): the same
   trivial-rewrite, canonical mapping (``header_sender``/``header_recipient``
   classes) and masquerading for addresses in From:, To:, Cc: and the like,
   for clients in ``local_header_rewrite_clients`` (see :mod:`mailstack.cleanup`);
   with canonical tables that do I/O, :meth:`AddressRewriter.header_address_async`
   and the header block waits for the lookups.
6. **BCC**: ``always_bcc``, ``sender_bcc_maps``, ``recipient_bcc_maps``
   recipients with DSN NOTIFY=NEVER (:meth:`AddressRewriter.bcc`).

A table that cannot answer raises :class:`~mailstack.common.reply.TemporaryReject`
(``451 4.3.0 Error: temporary lookup failure``): the message is not queued.

Parameters read: swap_bangpath, allow_percent_hack, append_at_myorigin,
append_dot_mydomain, myorigin, mydomain, canonical_maps,
sender_canonical_maps, recipient_canonical_maps, canonical_classes,
propagate_unmatched_extensions, masquerade_domains, masquerade_exceptions,
masquerade_classes, virtual_alias_maps, virtual_alias_recursion_limit,
virtual_alias_expansion_limit, always_bcc, sender_bcc_maps,
recipient_bcc_maps, recipient_delimiter.
"""

from twisted.logger import Logger

from mailstack.common.address import split_address
from mailstack.common.reply import TemporaryReject
from mailstack.tables.base import TableTemporaryError
from mailstack.tables.maps import LocalDomains

log = Logger(namespace="mailstack.cleanup")


def _lookup_failed():
    return TemporaryReject(451, "4.3.0", "Error: temporary lookup failure")


def apply_match(value, address, extension, propagate):
    """Return the result of a table lookup for ``address`` (Postfix mail_addr_map).

    ``value`` is the table's answer; ``extension`` is the address extension
    the matching key did not have (None when the key had it).  A result
    ``@domain`` moves the domain and keeps the user; the extension is put
    back when ``propagate`` (``propagate_unmatched_extensions`` lists the
    lookup's kind).  A list result (``a, b``) is left as it is.
    """
    local, _ = split_address(address)
    if value.startswith("@") and "," not in value:
        # "@domain @other": move the domain, keep the user.
        value = (local if extension is None else local[:len(local) - len(extension)]) + value
    if extension and propagate and "," not in value:
        vlocal, vdomain = split_address(value)
        value = "%s%s@%s" % (vlocal, extension, vdomain) if "@" in value else vlocal + extension
    return value


class AddressRewriter:
    """The address rewriting of one service's configuration.

    Args:
        config: the service's :class:`~mailstack.config.maincf.Config`.
        tables: a :class:`~mailstack.tables.registry.Tables`.
    """

    def __init__(self, config, tables):
        self.config = config
        self.is_local = LocalDomains(config, tables)
        self.delimiters = config["recipient_delimiter"]
        self.maps = {name: tables.maps(config[name], name) for name in (
            "canonical_maps", "sender_canonical_maps", "recipient_canonical_maps",
            "virtual_alias_maps", "sender_bcc_maps", "recipient_bcc_maps")}
        # True when every canonical table used for headers answers from memory
        # (fixed with the maps; asked once per message by cleanup).
        self.headers_synchronous = all(maps.synchronous for name, maps in self.maps.items()
                                       if name.endswith("canonical_maps") and maps)
        self.propagate = set(config["propagate_unmatched_extensions"])
        self.canonical_classes = set(config["canonical_classes"])
        self.masquerade_classes = set(config["masquerade_classes"])
        self.masquerade_domains = [d.lower() for d in config["masquerade_domains"]]
        self.masquerade_exceptions = {e.lower() for e in config["masquerade_exceptions"]}

    # -- 1. trivial-rewrite ------------------------------------------------

    def trivial(self, address):
        """Return ``address`` in canonical ``user@fully.qualified.domain`` form.

        The null address stays empty.
        """
        if not address:
            return address
        config = self.config
        local, domain = split_address(address)
        has_domain = "@" in address
        if not has_domain and config["swap_bangpath"] and "!" in local:
            site, _, rest = local.partition("!")
            if site and rest:
                local, domain, has_domain = rest, site, True
        if config["allow_percent_hack"] and "%" in local and (not has_domain or self.is_local(domain)):
            user, _, site = local.rpartition("%")
            if user and site:
                local, domain, has_domain = user, site, True
        if not has_domain:
            if not config["append_at_myorigin"]:
                return local
            domain = config["myorigin"]
        domain = domain.rstrip(".")
        if (config["append_dot_mydomain"] and "." not in domain and not domain.startswith("[")
                and config["mydomain"]):
            domain = "%s.%s" % (domain, config["mydomain"])
        return "%s@%s" % (local, domain)

    # -- lookups ------------------------------------------------------------

    async def _find(self, name, address):
        """Return the rewritten address from map list ``name``, or None when not found."""
        maps = self.maps[name]
        if not maps:
            return None
        try:
            match = await maps.find_address(address, "virtual", self.delimiters, self.is_local)
        except TableTemporaryError as err:
            log.warn("{name} lookup error for {address}: {err}", name=name, address=address, err=err)
            raise _lookup_failed() from None
        if match is None:
            return None
        return self._apply(match, address, name)

    def _apply(self, match, address, name):
        kind = name.replace("sender_", "").replace("recipient_", "").replace("_maps", "")
        return apply_match(match.value.strip(), address, match.extension, kind in self.propagate)

    # -- 2. canonical --------------------------------------------------------

    async def canonical(self, address, kind):
        """Apply ``{kind}_canonical_maps`` then ``canonical_maps``; ``kind`` is ``sender`` or ``recipient``."""
        if not address:
            return address
        cls = "envelope_" + kind
        if cls not in self.canonical_classes:
            return address
        for name in (kind + "_canonical_maps", "canonical_maps"):
            found = await self._find(name, address)
            if found is not None:
                address = self.trivial(found.split(",")[0].strip())
        return address

    def header_address(self, address, cls):
        """Rewrite an address found in a header: trivial-rewrite, canonical maps, masquerading.

        ``cls`` is ``header_sender`` or ``header_recipient``.  For tables
        that answer from memory (:attr:`headers_synchronous`); with a table
        that does I/O use :meth:`header_address_async`.  A table that fails
        leaves the address as it is.
        """
        coroutine = self.header_address_async(address, cls)
        try:
            coroutine.send(None)
        except StopIteration as done:
            return done.value
        coroutine.close()
        raise RuntimeError("header_address() needs tables that answer from memory; use header_address_async()")

    async def header_address_async(self, address, cls):
        """:meth:`header_address` for any tables (sqlite, proxy...): lookups are awaited."""
        if not address:
            return address
        address = self.trivial(address)
        if cls in self.canonical_classes:
            kind = "sender" if cls == "header_sender" else "recipient"
            for name in (kind + "_canonical_maps", "canonical_maps"):
                maps = self.maps[name]
                if not maps:
                    continue
                try:
                    match = await maps.find_address(address, "virtual", self.delimiters, self.is_local)
                except TableTemporaryError:
                    continue
                if match is not None:
                    address = self.trivial(self._apply(match, address, name).split(",")[0].strip())
        return self.masquerade(address, cls)

    # -- 3. masquerade --------------------------------------------------------

    def masquerade(self, address, cls="envelope_sender"):
        """Strip subdomains listed in ``masquerade_domains`` from ``address``."""
        if not address or cls not in self.masquerade_classes or not self.masquerade_domains:
            return address
        local, domain = split_address(address)
        if local.lower() in self.masquerade_exceptions:
            return address
        lower = domain.lower()
        for item in self.masquerade_domains:
            negate = item.startswith("!")
            name = item.lstrip("!")
            if lower == name:
                return address
            if lower.endswith("." + name):
                return address if negate else "%s@%s" % (local, name)
        return address

    # -- 4. virtual aliasing ---------------------------------------------------

    async def virtual(self, address):
        """Expand ``address`` through ``virtual_alias_maps``.

        Returns:
            the list of final addresses (``[address]`` when it is not an alias).

        Raises:
            TemporaryReject: on a lookup failure or when a limit is exceeded.
        """
        if not self.maps["virtual_alias_maps"]:
            return [address]
        result, seen = [], set()
        limit = self.config["virtual_alias_expansion_limit"]
        await self._expand(address, (), result, seen, limit)
        return result

    async def _expand(self, address, ancestors, result, seen, limit):
        if len(ancestors) >= self.config["virtual_alias_recursion_limit"]:
            log.warn("unreasonable virtual_alias_maps map nesting for {address}", address=address)
            raise TemporaryReject(451, "4.3.0", "Error: virtual alias recursion limit exceeded")
        key = address.lower()
        found = None
        if key not in (a.lower() for a in ancestors):
            found = await self._find("virtual_alias_maps", address)
        else:
            log.warn("virtual alias loop for {address} (via {chain})", address=address,
                     chain=" -> ".join(ancestors))
        if found is None:
            if key not in seen:
                seen.add(key)
                result.append(address)
                if len(result) > limit:
                    log.warn("unreasonable virtual_alias_maps map expansion size for {address}",
                             address=ancestors[0] if ancestors else address)
                    raise TemporaryReject(451, "4.3.0", "Error: virtual alias expansion limit exceeded")
            return
        targets = [self.trivial(t.strip()) for t in found.split(",") if t.strip()]
        for target in targets:
            if target.lower() == key:
                # "a -> a, b": a stays a final recipient (virtual(5)).
                if key not in seen:
                    seen.add(key)
                    result.append(target)
                continue
            await self._expand(target, ancestors + (address,), result, seen, limit)

    # -- 5. BCC ---------------------------------------------------------------

    async def bcc(self, sender, recipients):
        """Return the BCC addresses for a message: always_bcc, sender_bcc_maps, recipient_bcc_maps."""
        extra = []
        if self.config["always_bcc"]:
            extra.append(self.trivial(self.config["always_bcc"]))
        if sender:
            found = await self._find("sender_bcc_maps", sender)
            if found:
                extra.append(self.trivial(found.split(",")[0].strip()))
        if self.maps["recipient_bcc_maps"]:
            for rcpt in recipients:
                found = await self._find("recipient_bcc_maps", rcpt)
                if found:
                    extra.append(self.trivial(found.split(",")[0].strip()))
        return extra
