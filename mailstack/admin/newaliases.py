# -*- test-case-name: tests.admin.test_postmap -*-
"""``mailstack newaliases``: rebuild the alias database, as Postfix's newaliases(1).

Each ``hash:name`` table in ``$alias_database`` is compiled from the
aliases(5) source ``name`` (``name: value, value``, continuation lines
starting with white space, ``#`` comments) into the index ``name.db``.
Keys are the names without the colon, lower-cased.  An error names
``file:line: reason`` and stops the build; other table types in the list
are reported and skipped, since they are used as they are.
"""

import os
import sys

from mailstack.admin import postmap
from mailstack.config import maincf
from mailstack.tables.registry import split_spec

DESCRIPTION = __doc__.split("\n", 2)[2]


def add_arguments(parser):
    pass


def run(args):
    config = maincf.load(args.config)
    for spec in config["alias_database"]:
        kind, name = split_spec(spec)
        if kind != "hash":
            postmap._warn("%s: not a hash table; nothing to build" % spec)
            continue
        if not os.path.isabs(name):
            name = os.path.join(config["config_directory"], name)
        count = postmap.build("hash:" + name, aliases=True)
        sys.stderr.write("mailstack/newaliases: %s: %d aliases\n" % (name, count))
    return 0
