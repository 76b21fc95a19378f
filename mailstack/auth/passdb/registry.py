# -*- test-case-name: tests.auth.test_passdb -*-
"""The passdb driver registry: ``passdb = DRIVER:ARGS`` in main.cf.

Built-ins, one a line (Dovecot ``passdbs_init``): ``passwd-file``,
``static``, ``sqlite``.  An unknown driver is a configuration error that
lists the known ones.
"""

from mailstack.auth.passdb.base import DriverArgsError
from mailstack.auth.passdb.passwd_file import PasswdFilePassdb
from mailstack.auth.passdb.sqlite import SqlitePassdb
from mailstack.auth.passdb.static import StaticPassdb

DRIVERS = {
    "passwd-file": PasswdFilePassdb,
    "static": StaticPassdb,
    "sqlite": SqlitePassdb,
}


def open_passdb(driver, args, ctx):
    """Return the passdb for ``driver:args``.

    Raises:
        DriverArgsError: for an unknown driver or bad arguments.
    """
    try:
        factory = DRIVERS[driver]
    except KeyError:
        raise DriverArgsError("unknown passdb driver %r (known: %s)" % (driver, ", ".join(DRIVERS))) from None
    return factory(args, ctx)
