# -*- test-case-name: tests.admin.test_postmap -*-
"""``mailstack postmap``: build, query and dump lookup tables, as Postfix's postmap(1).

``mailstack postmap [-i] [-q KEY | -s | -d KEY] [type:]name ...``

- Without options: build each table.  For ``hash:name`` (the default
  type, ``$default_database_type``) the source file ``name`` is compiled
  into the index ``name.db``, replaced atomically.  An error in the source
  names ``file:line: reason`` and stops the build, leaving the old index
  in place.  Other file types need no build: their files are checked.
- ``-q KEY``: look KEY up in the tables, in order, and print the first
  value found.  Every table type can be queried.  The key is used as
  given (no address or domain splitting); fixed tables lower-case it.
  ``-q -`` reads keys from standard input, one a line, and prints
  ``key<TAB>value`` for each key found.
- ``-s``: print every ``key<TAB>value`` of ``hash``, ``texthash`` and
  ``inline`` tables, in key order.
- ``-d KEY``: remove KEY from each ``hash`` index (not from the source).
- ``-i``: add ``key value`` lines read from standard input to each
  ``hash`` index, replacing keys that exist.

Exit status: 0 when the query or deletion found something (or the build
succeeded), 1 when nothing was found or the table is wrong (as Postfix),
75 (EX_TEMPFAIL) when a table could not answer a query.

Relative table names are relative to the current directory, as in
Postfix; ``--config`` only supplies ``default_database_type``.
"""

import os
import sys

from mailstack.config import maincf
from mailstack.tables import hash as hashtable
from mailstack.tables.base import TableConfigError, TableTemporaryError, read_text
from mailstack.tables.registry import TableContext, open_table, split_spec, table_type

DESCRIPTION = __doc__.split("\n", 2)[2]
EX_TEMPFAIL = 75


def add_arguments(parser):
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", dest="query", metavar="KEY", help="print the value of KEY ('-' reads keys from stdin)")
    group.add_argument("-s", dest="dump", action="store_true", help="print every key and value")
    group.add_argument("-d", dest="delete", metavar="KEY", help="remove KEY from hash indexes")
    group.add_argument("-i", dest="incremental", action="store_true",
                       help="add 'key value' lines from standard input to hash indexes")
    parser.add_argument("tables", nargs="+", metavar="[type:]name", help="tables (default type: hash)")


def _warn(text):
    sys.stderr.write("mailstack/postmap: warning: %s\n" % text)


def _default_type(args):
    try:
        return maincf.load(args.config)["default_database_type"]
    except maincf.ConfigError:
        return "hash"


def qualify(name, default_type):
    """Return ``type:name``, adding ``default_type`` to a bare file name."""
    if ":" in name and not name.startswith((".", "/")):
        kind, rest = split_spec(name)
        table_type(kind)
        return "%s:%s" % (kind, rest)
    return "%s:%s" % (default_type, name)


def run(args):
    default_type = _default_type(args)
    specs = [qualify(name, default_type) for name in args.tables]
    if args.query is not None:
        return query(specs, args.query)
    if args.dump:
        return dump(specs)
    if args.delete is not None:
        return delete(specs, args.delete)
    if args.incremental:
        return add(specs, sys.stdin.read())
    for spec in specs:
        build(spec)
    return 0


def build(spec, aliases=False):
    """Build one table: compile ``hash`` sources, check the other file types.

    Raises:
        TableConfigError: naming ``file:line: reason``; no index is written.
    """
    kind, name = split_spec(spec)
    if kind == "hash":
        try:
            text = read_text(name)
        except OSError as err:
            raise TableConfigError("open %s: %s" % (name, err.strerror)) from None
        parse = hashtable.parse_aliases if aliases else hashtable.parse_source
        entries = parse(text, name, warn=_warn)
        hashtable.write_index(name + ".db", entries)
        return len(entries)
    if table_type(kind).compiled:
        raise TableConfigError("%s: cannot build this table type" % spec)
    open_table(spec, _cli_context(), strict=True)
    _warn("%s: this table type is used as it is; file checked, nothing to build" % spec)
    return None


def _cli_context():
    return TableContext(reactor=None, base_directory=None, check_interval=0)


def query(specs, key):
    """Print the first value found for ``key`` (or each stdin key for ``-``); return the exit status."""
    tables = [open_table(spec, _cli_context(), strict=True) for spec in specs]
    keys = [line.rstrip("\r\n") for line in sys.stdin] if key == "-" else [key]
    status = 1
    try:
        for item in keys:
            for table in tables:
                value = table.lookup_blocking(item)
                if value is not None:
                    sys.stdout.write("%s\t%s\n" % (item, value) if key == "-" else value + "\n")
                    status = 0
                    break
    except TableTemporaryError as err:
        sys.stderr.write("mailstack/postmap: fatal: %s\n" % err)
        return EX_TEMPFAIL
    finally:
        for table in tables:
            table.close()
    return status


def dump(specs):
    """Print every entry of each table; return the exit status."""
    for spec in specs:
        table = open_table(spec, _cli_context(), strict=True)
        try:
            items = getattr(table, "items", None)
            if items is None:
                raise TableConfigError("%s: this table type cannot be listed" % spec)
            for key, value in items():
                sys.stdout.write("%s\t%s\n" % (key, value))
        finally:
            table.close()
    return 0


def _hash_name(spec, what):
    kind, name = split_spec(spec)
    if kind != "hash":
        raise TableConfigError("%s: %s works on hash tables only" % (spec, what))
    return name + ".db"


def delete(specs, key):
    """Remove ``key`` from each hash index; return 0 when some index had it."""
    status = 1
    for spec in specs:
        path = _hash_name(spec, "-d")
        entries = _read_index(spec, path)
        if entries.pop(key.lower(), None) is not None:
            hashtable.write_index(path, entries)
            status = 0
    return status


def add(specs, text):
    """Add ``key value`` lines to each hash index; return the exit status."""
    new = hashtable.parse_source(text, "-", warn=_warn)
    for spec in specs:
        path = _hash_name(spec, "-i")
        entries = _read_index(spec, path) if os.path.exists(path) else {}
        entries.update(new)
        hashtable.write_index(path, entries)
    return 0


def _read_index(spec, path):
    try:
        return hashtable.read_index(path)
    except OSError as err:
        raise TableConfigError("%s: cannot open %s: %s" % (spec, path, err.strerror)) from None
