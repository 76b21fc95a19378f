# -*- test-case-name: tests.tables.test_maps -*-
"""Search lists over several tables, in Postfix's lookup orders.

A :class:`MapList` is the value of a map parameter (``virtual_alias_maps =
hash:/a, regexp:/b``) opened (Postfix ``maps.c``).  A search takes a list
of query keys; each key is sent to every table, in order, before the next
key is tried, and the first value found wins.  A table that fails stops
the search with :class:`~mailstack.tables.base.TableTemporaryError`: a
later table or key must not answer in its place.

Partial keys (everything but the full address, host name or IP address)
are only sent to *fixed* tables (``hash``, ``texthash``, ``inline``,
``static``, ``sqlite``, ``unix``); pattern tables (``regexp``, ``pcre``,
``cidr``) see only the full string, as access(5) and virtual(5) say.

Key orders (``+`` stands for any character of ``recipient_delimiter``):

- :func:`address_keys` style ``virtual`` (virtual(5), canonical(5),
  relocated(5)): ``user+ext@domain``, ``user@domain``, then, only when
  the domain is local ($myorigin, $mydestination, $inet_interfaces,
  $proxy_interfaces), ``user+ext`` and ``user``, then ``@domain``.
- style ``access`` (access(5) EMAIL ADDRESS PATTERNS): ``user+ext@domain``,
  ``user@domain``, ``domain`` and its parents (see below), ``user+ext@``,
  ``user@``.
- :func:`localpart_keys` (aliases(5)): ``user+ext``, ``user``.
- :func:`domain_keys` (access(5) HOST NAME PATTERNS): ``a.b.example.com``,
  then its parents: ``b.example.com``, ``example.com``, ``com`` when
  ``smtpd_access_maps`` is in ``parent_domain_matches_subdomains``, else
  ``.b.example.com``, ``.example.com``, ``.com``.
- :func:`ip_keys`: ``1.2.3.4``, ``1.2.3``, ``1.2``, ``1``; IPv6 in
  compressed form, dropping the last ``:part`` each time
  (``2001:db8::1``, ``2001:db8:``, ``2001:db8``, ``2001``).  An
  IPv4-mapped IPv6 address is looked up as IPv4.

The address is split at the first character of ``recipient_delimiter``
that occurs in the local part, except for ``postmaster``,
``MAILER-DAEMON``, ``double-bounce``, and (with ``-`` as a delimiter)
``owner-*`` and ``*-request``; an extension is never split off when it
would leave an empty user (Postfix ``split_addr.c``).

Every search has a Deferred form (``find_address``) and, when every table
is in memory (:attr:`MapList.synchronous`), a synchronous ``_now`` form
that returns at once; the Deferred form of such a list has already fired.

Parameters read (by :class:`LocalDomains`): ``myorigin``,
``mydestination``, ``inet_interfaces``, ``proxy_interfaces``,
``parent_domain_matches_subdomains``; callers pass ``recipient_delimiter``.
"""

import ipaddress
from dataclasses import dataclass

from twisted.internet import defer

from mailstack.tables.base import TableConfigError, TableTemporaryError

_NO_SPLIT = ("postmaster", "mailer-daemon")


@dataclass(frozen=True)
class Match:
    """A successful search.

    Attributes:
        value: the table's answer.
        key: the query key that matched (``@example.com``, ``1.2.3``...).
        table: the ``type:name`` of the table that answered.
        extension: for address searches, the address extension (with its
            delimiter, ``+foo``) when the matched key did not include it,
            for ``propagate_unmatched_extensions``; else None.
    """

    value: str
    key: str
    table: str
    extension: str = None


def split_localpart(localpart, delimiters, double_bounce="double-bounce"):
    """Split ``user+ext`` at the first delimiter character.

    Returns:
        (user, extension) where extension includes its delimiter, or
        (localpart, None) when the address is not split.
    """
    if not delimiters or not localpart:
        return localpart, None
    lower = localpart.lower()
    if lower in _NO_SPLIT or lower == double_bounce.lower():
        return localpart, None
    if "-" in delimiters and (lower.startswith("owner-") or (len(lower) > 8 and lower.endswith("-request"))):
        return localpart, None
    for index, char in enumerate(localpart):
        if char in delimiters:
            if index == 0:
                return localpart, None
            return localpart[:index], localpart[index:]
    return localpart, None


def _split_address(address):
    local, at, domain = address.rpartition("@")
    if not at:
        return address, None
    return local, domain


def address_keys(address, style="virtual", delimiters="", is_local=None, parent_matches_subdomains=True):
    """Return the query keys for a mail address, as ``[(key, partial, has_extension)]``.

    Args:
        address: ``user@domain`` (or a bare local part).
        style: ``virtual`` (virtual(5), canonical(5)) or ``access`` (access(5)).
        delimiters: the ``recipient_delimiter`` characters.
        is_local: ``domain -> bool``, whether bare ``user`` keys apply
            (``virtual`` style); None means never for addresses with a domain.
        parent_matches_subdomains: for ``access`` style domain keys.
    """
    local, domain = _split_address(address)
    user, extension = split_localpart(local, delimiters)
    keys = [(address, False, True)]
    if extension:
        keys.append(("%s@%s" % (user, domain) if domain is not None else user, True, False))
    if style == "access":
        if domain:
            keys.extend((k, True, True) for k, _ in domain_keys(domain, parent_matches_subdomains))
        if domain is not None and local:
            if extension:
                keys.append((local + "@", True, True))
            keys.append((user + "@", True, False))
        return _unique(keys)
    if style != "virtual":
        raise ValueError("unknown address lookup style %r" % style)
    if domain is None:
        return keys
    if local and is_local is not None and is_local(domain):
        if extension:
            keys.append((local, True, True))
        keys.append((user, True, False))
    keys.append(("@" + domain, True, True))
    return _unique(keys)


def _unique(keys):
    seen, result = set(), []
    for item in keys:
        if item[0] not in seen:
            seen.add(item[0])
            result.append(item)
    return result


def localpart_keys(localpart, delimiters=""):
    """Return ``[(key, partial, has_extension)]`` for an aliases(5) lookup: ``user+ext``, then ``user``."""
    user, extension = split_localpart(localpart, delimiters)
    keys = [(localpart, False, True)]
    if extension:
        keys.append((user, True, False))
    return keys


def domain_keys(domain, parent_matches_subdomains=True):
    """Return ``[(key, partial)]``: the domain, then its parent domains.

    With ``parent_matches_subdomains`` the parents are ``example.com`` and
    ``com``; without, ``.example.com`` and ``.com`` (access(5)).  Address
    literals (``[1.2.3.4]``) have no parents.
    """
    name = domain.rstrip(".")
    keys = [(name, False)]
    if name.startswith("["):
        return keys
    position = 0
    while True:
        dot = name.find(".", position + 1)
        if dot < 0:
            break
        keys.append((name[dot + 1:] if parent_matches_subdomains else name[dot:], True))
        position = dot
    return keys


def ip_keys(address):
    """Return ``[(key, partial)]`` for an IP address and its shorter network prefixes.

    A string that is not an IP address gives just itself.
    """
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return [(address, False)]
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    text = addr.compressed
    delim = ":" if addr.version == 6 else "."
    keys = [(text, False)]
    while True:
        cut = text.rfind(delim)
        if cut <= 0:
            break
        text = text[:cut]
        keys.append((text, True))
    return keys


class MapList:
    """An ordered list of open tables searched as one (Postfix ``MAPS``).

    Args:
        tables: open :class:`~mailstack.tables.base.Table` objects.
        title: the parameter name, for messages.

    Attributes:
        synchronous: True when every table answers from memory, so the
            ``*_now`` methods work.
    """

    def __init__(self, tables, title=""):
        self.tables = tuple(tables)
        self.title = title
        self.synchronous = all(t.synchronous for t in self.tables)

    def __bool__(self):
        return bool(self.tables)

    def __repr__(self):
        return "<MapList %s: %s>" % (self.title, ", ".join(t.spec for t in self.tables))

    # -- the search --------------------------------------------------------

    def search_now(self, keys):
        """Search ``keys`` (``[(key, partial, ...)]``) synchronously.

        Returns:
            ``(Match, item)`` for the first key found, where ``item`` is
            the element of ``keys`` that matched, or None.

        Raises:
            TableTemporaryError: a table failed.
            NotInMemoryError: a table does I/O.
        """
        for item in keys:
            key, partial = item[0], item[1]
            for table in self.tables:
                if partial and not table.fixed:
                    continue
                value = table.lookup_now(key)
                if value is not None:
                    return Match(value, key, table.spec), item
        return None

    def search(self, keys):
        """Search ``keys`` like :meth:`search_now`; return a Deferred.

        For in-memory lists the Deferred has already fired.
        """
        if self.synchronous:
            try:
                return defer.succeed(self.search_now(keys))
            except TableTemporaryError as err:
                return defer.fail(err)
        return defer.ensureDeferred(self._search_async(keys))

    async def _search_async(self, keys):
        for item in keys:
            key, partial = item[0], item[1]
            for table in self.tables:
                if partial and not table.fixed:
                    continue
                value = await table.lookup(key)
                if value is not None:
                    return Match(value, key, table.spec), item
        return None

    # -- plain keys --------------------------------------------------------

    def lookup_now(self, key):
        """Return the first table's value for ``key`` (the full key only), or None."""
        found = self.search_now([(key, False)])
        return found[0].value if found else None

    def lookup(self, key):
        """Deferred form of :meth:`lookup_now`."""
        return self.search([(key, False)]).addCallback(lambda found: found[0].value if found else None)

    # -- Postfix lookup orders ---------------------------------------------

    def find_address_now(self, address, style="virtual", delimiters="", is_local=None,
                         parent_matches_subdomains=True):
        """Find a mail address in Postfix's order; see :func:`address_keys`.

        Returns:
            a :class:`Match` (``extension`` set when the matched key lacked
            the address extension), or None.
        """
        return _address_match(self.search_now(address_keys(
            address, style, delimiters, is_local, parent_matches_subdomains)), address, delimiters)

    def find_address(self, address, style="virtual", delimiters="", is_local=None,
                     parent_matches_subdomains=True):
        """Deferred form of :meth:`find_address_now`."""
        keys = address_keys(address, style, delimiters, is_local, parent_matches_subdomains)
        return self.search(keys).addCallback(_address_match, address, delimiters)

    def find_localpart_now(self, localpart, delimiters=""):
        """Find an aliases(5) name: ``user+ext``, then ``user``.  Returns a :class:`Match` or None."""
        return _address_match(self.search_now(localpart_keys(localpart, delimiters)), localpart, delimiters)

    def find_localpart(self, localpart, delimiters=""):
        """Deferred form of :meth:`find_localpart_now`."""
        return self.search(localpart_keys(localpart, delimiters)).addCallback(
            _address_match, localpart, delimiters)

    def find_domain_now(self, domain, parent_matches_subdomains=True, partial=False):
        """Find a host or domain name, then its parent domains (access(5)).

        Args:
            partial: the name itself is a partial key too (the domain of an
                address is: pattern tables saw the whole address already).

        Returns:
            a :class:`Match` or None.
        """
        keys = domain_keys(domain, parent_matches_subdomains)
        if partial:
            keys = [(k, True) for k, _ in keys]
        found = self.search_now(keys)
        return found[0] if found else None

    def find_domain(self, domain, parent_matches_subdomains=True, partial=False):
        """Deferred form of :meth:`find_domain_now`."""
        keys = domain_keys(domain, parent_matches_subdomains)
        if partial:
            keys = [(k, True) for k, _ in keys]
        return self.search(keys).addCallback(lambda found: found[0] if found else None)

    def find_ip_now(self, address):
        """Find an IP address, then its shorter network prefixes (access(5)).  Returns a :class:`Match` or None."""
        found = self.search_now(ip_keys(address))
        return found[0] if found else None

    def find_ip(self, address):
        """Deferred form of :meth:`find_ip_now`."""
        return self.search(ip_keys(address)).addCallback(lambda found: found[0] if found else None)


def _address_match(found, address, delimiters):
    if not found:
        return None
    match, item = found
    if item[2]:
        return match
    local, _ = _split_address(address)
    _, extension = split_localpart(local, delimiters)
    return Match(match.value, match.key, match.table, extension)


class LocalDomains:
    """Whether a domain is this machine's own, for the ``virtual`` style ``user`` keys.

    A domain is local when it equals ``$myorigin``, matches
    ``$mydestination`` (names; ``.domain`` for subdomains, or any
    subdomain when ``mydestination`` is in
    ``parent_domain_matches_subdomains``; ``!name`` excludes; ``/file``
    holds more names; ``type:name`` tables that answer from memory), or is
    an address literal
    ``[addr]`` of ``$inet_interfaces`` or ``$proxy_interfaces``.

    Args:
        config: a :class:`~mailstack.config.maincf.Config`.
        tables: a :class:`~mailstack.tables.registry.Tables` for table
            entries in mydestination; None treats them as not matching.
        interfaces: the machine's addresses for ``inet_interfaces = all``
            (default: :func:`mailstack.util.netinfo.interfaces`).
    """

    def __init__(self, config, tables=None, interfaces=None):
        self.myorigin = config["myorigin"].lower().rstrip(".")
        self.parent = "mydestination" in config["parent_domain_matches_subdomains"]
        self.patterns = []
        for item in _expand_files(config["mydestination"]):
            if ":" in item and not item.startswith("["):
                if tables is not None:
                    self.patterns.append(("table", tables.open(item)))
                continue
            negate = item.startswith("!")
            self.patterns.append(("not" if negate else "name", item.lstrip("!").lower().rstrip(".")))
        self.addresses = set()
        for word in list(config["inet_interfaces"]) + list(config["proxy_interfaces"]):
            word = word.lower()
            if word in ("all",):
                self.addresses.update(str(i.ip) for i in (interfaces if interfaces is not None
                                                           else _machine_interfaces()))
                self.addresses.update(("127.0.0.1", "::1"))
            elif word == "loopback-only":
                self.addresses.update(("127.0.0.1", "::1"))
            else:
                try:
                    self.addresses.add(str(ipaddress.ip_address(word.strip("[]"))))
                except ValueError:
                    pass

    def __call__(self, domain):
        """Return True when ``domain`` is local."""
        domain = domain.lower().rstrip(".")
        if domain.startswith("[") and domain.endswith("]"):
            text = domain[1:-1]
            if text.startswith("ipv6:"):
                text = text[5:]
            try:
                return str(ipaddress.ip_address(text)) in self.addresses
            except ValueError:
                return False
        if domain == self.myorigin:
            return True
        for kind, pattern in self.patterns:
            if kind == "table":
                if pattern.synchronous and pattern.lookup_now(domain) is not None:
                    return True
                continue
            if self._name_matches(pattern, domain):
                return kind == "name"
        return False

    def _name_matches(self, pattern, domain):
        if pattern.startswith("."):
            return domain.endswith(pattern)
        if domain == pattern:
            return True
        return self.parent and domain.endswith("." + pattern)


def _expand_files(items):
    """Replace ``/file`` items of a domain list by the words in the file (``#`` comments allowed).

    Raises:
        TableConfigError: when such a file cannot be read.
    """
    result = []
    for item in items:
        if not item.startswith("/"):
            result.append(item)
            continue
        try:
            with open(item, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as err:
            raise TableConfigError("mydestination: cannot read %s: %s" % (item, err.strerror)) from None
        for line in text.splitlines():
            result.extend(w for w in line.split("#", 1)[0].replace(",", " ").split())
    return result


def _machine_interfaces():
    from mailstack.util import netinfo
    return netinfo.interfaces()
