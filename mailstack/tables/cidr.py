# -*- test-case-name: tests.tables.test_cidr -*-
"""``cidr`` tables: network/prefix patterns, first match wins.

File syntax (Postfix ``cidr_table(5)``, Postfix 3.2 and later)::

    192.168.1.1         OK           an exact address
    192.168.0.0/16      REJECT       a network: the host bits must be zero
    !10.0.0.0/8         result       when the key is NOT in the network
    2001:db8::/32       REJECT       IPv6 the same way
    if 10.0.0.0/8                    the rules up to endif apply only inside
    endif

Patterns may be written in ``[]``; keys may not (as in Postfix).  IPv4 patterns never match IPv6 keys
and the other way round, not even negated ones.  A key that is not an IP address is not found.
Rules can be given inline: ``cidr:{ {10.0.0.0/8 OK}, {0.0.0.0/0 REJECT} }``.
An IPv4 octet with a leading zero (octal in inet_aton) and non-zero host
bits are errors naming ``file:line``, as in Postfix.
"""

import ipaddress
import re

from mailstack.tables.base import FileTable, TableConfigError, logical_lines


def parse_address(text):
    """Return an ``ipaddress`` address for a lookup key, or None when it is not one.

    As in Postfix, a key in ``[]`` or with an IPv6 zone (``%eth0``) is not
    an address (only patterns may use ``[]``).
    """
    text = text.strip()
    if "%" in text:  # Python's ipaddress accepts scoped IPv6 addresses; Postfix does not.
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_network(text, where):
    """Parse a cidr pattern into ``(version, network int, mask int)``.

    Raises:
        TableConfigError: for a bad address, prefix or non-zero host bits.
    """
    pattern = text
    if pattern.startswith("["):
        pattern = pattern.replace("[", "", 1).replace("]", "", 1)
    address, slash, prefix = pattern.partition("/")
    try:
        if "%" in address:
            raise ValueError("scoped address")
        addr = ipaddress.ip_address(address)
    except ValueError:
        raise TableConfigError('%s: bad net/mask pattern: "%s"' % (where, text)) from None
    bits = addr.max_prefixlen
    if slash:
        if not prefix.isdigit() or int(prefix) > bits:
            raise TableConfigError('%s: bad net/mask pattern: "%s"' % (where, text))
        length = int(prefix)
    else:
        length = bits
    mask = ((1 << bits) - 1) ^ ((1 << (bits - length)) - 1)
    value = int(addr)
    if value & ~mask:
        network = ipaddress.ip_network("%s/%d" % (address, length), strict=False)
        raise TableConfigError('%s: non-null host address bits in "%s", perhaps you should use "%s" instead'
                               % (where, text, network))
    return addr.version, value, mask


class _Rule:
    __slots__ = ("version", "network", "mask", "negate", "result", "end", "lineno")

    def __init__(self, lineno, version, network, mask, negate, result):
        self.lineno = lineno
        self.version, self.network, self.mask = version, network, mask
        self.negate = negate
        self.result = result  # None for an "if"
        self.end = None


class CIDRTable(FileTable):
    """``cidr:/file``: addresses and networks in file order, first match wins."""

    type_name = "cidr"
    fixed = False
    fold = False
    inline_ok = True

    def _load(self, path):
        rules, stack = [], []
        for lineno, line in logical_lines(self._source_text(), self.source):
            where = "%s:%d" % (self.source, lineno)
            word = re.match(r"(?i)(if|endif)(?![A-Za-z0-9])", line)
            if word and word.group(1).lower() == "endif":
                if not stack:
                    raise TableConfigError("%s: endif without matching if" % where)
                rules[stack.pop()].end = len(rules)
                continue
            text = line[word.end():].strip() if word else line.strip()
            negate = text.startswith("!")
            if negate:
                text = text[1:].lstrip()
            parts = text.split(None, 1)
            if not parts:
                raise TableConfigError("%s: missing address pattern" % where)
            version, network, mask = parse_network(parts[0], where)
            if word:
                stack.append(len(rules))
                rules.append(_Rule(lineno, version, network, mask, negate, None))
                continue
            if len(parts) < 2:
                raise TableConfigError("%s: no result after the address pattern" % where)
            rules.append(_Rule(lineno, version, network, mask, negate, parts[1].strip()))
        if stack:
            raise TableConfigError("%s:%d: if has no matching endif" % (self.source, rules[stack[-1]].lineno))
        return rules

    def _get(self, key):
        addr = parse_address(key)
        if addr is None:
            return None
        version, value = addr.version, int(addr)
        rules = self._data
        i, count = 0, len(rules)
        while i < count:
            rule = rules[i]
            # A rule of the other address family never applies, negated or not.
            hit = rule.version == version and (value & rule.mask == rule.network) != rule.negate
            if rule.result is None:
                i = i + 1 if hit else rule.end
                continue
            if hit:
                return rule.result
            i += 1
        return None
