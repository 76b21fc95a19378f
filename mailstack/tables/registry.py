# -*- test-case-name: tests.tables.test_registry -*-
"""The one ``type:name`` parser and the registry of table types.

Every map-valued parameter (``alias_maps``, ``virtual_alias_maps``,
``check_client_access`` arguments...) names tables as ``type:name``; this
module turns such a word into an open :class:`~mailstack.tables.base.Table`
(Postfix ``dict_open.c``, ``dict_open_info[]``).

Types (one :class:`TableType` each, listed in :data:`TABLE_TYPES`):

==========  ==============================================================
hash        index built by ``mailstack postmap`` from a source file
texthash    the source file itself, read into memory
regexp      POSIX regular expressions, first match wins
pcre        Perl-compatible regular expressions, first match wins
cidr        network/prefix patterns, first match wins
static      one value for every key
inline      ``inline:{ key=value, ... }`` in the parameter itself
sqlite      an SQL query per lookup (configuration file, sqlite_table(5))
unix        ``passwd.byname``, ``group.byname``: system users and groups
fail        every lookup fails temporarily
==========  ==============================================================

``proxy:type:name`` is accepted and means ``type:name``: mailstack has no
separate proxymap process; tables are shared within one process by
:class:`Tables`.  An unknown type is a
:class:`~mailstack.tables.base.TableConfigError` that lists the known ones.

Relative file names are taken relative to ``base_directory`` (the
configuration directory for the servers, the current directory for the
command line tools).

Parameters read (by :func:`tables_for`): ``lookup_table_check_interval``.
"""

from dataclasses import dataclass
from typing import Callable

from mailstack.tables import cidr, hash as hashtable, regexp, simple, sql
from mailstack.tables.base import FileTable, TableConfigError


@dataclass(frozen=True)
class TableType:
    """One table type.

    Attributes:
        name: the word before the colon.
        factory: ``(name, context) -> Table``.
        doc: one line for ``postconf -m``-style listings and the docs.
        fixed: keyed by exact strings (partial keys are tried), as Postfix ``DICT_FLAG_FIXED``.
        synchronous: answers from memory (``lookup_now`` works).
        compiled: needs ``postmap`` to build an index from its source.
    """

    name: str
    factory: Callable
    doc: str
    fixed: bool = True
    synchronous: bool = True
    compiled: bool = False


TABLE_TYPES = {t.name: t for t in (
    TableType("hash", hashtable.HashTable, "indexed file built by 'mailstack postmap' (name.db)", compiled=True),
    TableType("texthash", hashtable.TextHashTable, "postmap source file read into memory, re-read on change"),
    TableType("regexp", regexp.RegexpTable, "POSIX regular expressions, first match wins", fixed=False),
    TableType("pcre", regexp.PCRETable, "Perl-compatible regular expressions, first match wins", fixed=False),
    TableType("cidr", cidr.CIDRTable, "network/prefix patterns, first match wins", fixed=False),
    TableType("static", simple.StaticTable, "the same value for every key"),
    TableType("inline", simple.InlineTable, "inline:{ key=value, ... } written in the parameter"),
    TableType("sqlite", sql.SQLiteTable, "SQL query per lookup; name is a sqlite_table(5) file",
              synchronous=False),
    TableType("unix", simple.UnixTable, "system users and groups (passwd.byname, group.byname)",
              synchronous=False),
    TableType("fail", simple.FailTable, "every lookup fails temporarily", fixed=False),
)}


@dataclass(frozen=True)
class TableContext:
    """What tables need from their surroundings.

    Attributes:
        reactor: gives ``seconds()`` for change checks and the thread pool
            for tables that do I/O; None in command-line tools.
        base_directory: where relative file names are found.
        check_interval: seconds between checks of a table file for changes
            (0: every lookup).
    """

    reactor: object = None
    base_directory: str = None
    check_interval: float = 1.0


def split_spec(spec):
    """Split ``type:name`` (``proxy:`` removed) into (type, name).

    Raises:
        TableConfigError: without a colon, or with an empty name.
    """
    text = spec.strip()
    while text.startswith("proxy:"):
        text = text[len("proxy:"):]
    kind, colon, name = text.partition(":")
    if not colon or not kind:
        raise TableConfigError("bad table %r: expected type:name" % spec)
    if not name:
        raise TableConfigError("bad table %r: empty name" % spec)
    return kind, name


def table_type(kind):
    """Return the :class:`TableType` named ``kind``.

    Raises:
        TableConfigError: for an unknown type, listing the known ones.
    """
    try:
        return TABLE_TYPES[kind]
    except KeyError:
        raise TableConfigError("unsupported dictionary type: %s (known: %s)"
                               % (kind, ", ".join(sorted(TABLE_TYPES)))) from None


def open_table(spec, context=None, strict=False):
    """Open the table ``type:name``.

    File tables are read at once, so syntax errors surface here; a missing
    file is logged and makes lookups fail temporarily, unless ``strict``.

    Raises:
        TableConfigError: unknown type, bad name, or a table file with errors.
    """
    kind, name = split_spec(spec)
    table = table_type(kind).factory(name, context or TableContext())
    if isinstance(table, FileTable):
        table.open(strict=strict)
    return table


class Tables:
    """Open tables shared by every user in a process, keyed by ``type:name``.

    Args:
        reactor: see :class:`TableContext`.
        base_directory: see :class:`TableContext`.
        check_interval: see :class:`TableContext`.
    """

    def __init__(self, reactor=None, base_directory=None, check_interval=1.0):
        self.context = TableContext(reactor, base_directory, check_interval)
        self._open = {}

    def open(self, spec):
        """Return the open table for ``spec``, opening it on first use.

        Raises:
            TableConfigError: see :func:`open_table`.
        """
        kind, name = split_spec(spec)
        key = "%s:%s" % (kind, name)
        table = self._open.get(key)
        if table is None:
            table = self._open[key] = open_table(key, self.context)
        return table

    def maps(self, specs, title=""):
        """Return a :class:`~mailstack.tables.maps.MapList` over ``specs`` (a list of ``type:name``).

        Raises:
            TableConfigError: naming ``title`` (the parameter) and the table.
        """
        from mailstack.tables.maps import MapList
        tables = []
        for spec in specs:
            try:
                tables.append(self.open(spec))
            except TableConfigError as err:
                raise TableConfigError("%s: %s" % (title, err) if title else str(err)) from None
        return MapList(tables, title)

    def close(self):
        """Close every open table."""
        for table in self._open.values():
            table.close()
        self._open.clear()


def tables_for(ctx):
    """Return the process-wide :class:`Tables` of a :class:`mailstack.app.ServerContext`."""
    return ctx.shared("tables", lambda: Tables(
        ctx.reactor, ctx.config_directory, ctx.config["lookup_table_check_interval"]))
