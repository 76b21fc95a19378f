# -*- test-case-name: tests.auth.test_userdb -*-
"""The userdb driver registry: ``userdb = DRIVER:ARGS`` in main.cf.

Built-ins, one a line: ``passwd-file``, ``static``, ``sqlite``.
"""

from mailstack.auth.passdb.base import DriverArgsError
from mailstack.auth.userdb.passwd_file import PasswdFileUserdb
from mailstack.auth.userdb.sqlite import SqliteUserdb
from mailstack.auth.userdb.static import StaticUserdb

DRIVERS = {
    "passwd-file": PasswdFileUserdb,
    "static": StaticUserdb,
    "sqlite": SqliteUserdb,
}


def open_userdb(driver, args, ctx):
    """Return the userdb for ``driver:args``.

    Raises:
        DriverArgsError: for an unknown driver or bad arguments.
    """
    try:
        factory = DRIVERS[driver]
    except KeyError:
        raise DriverArgsError("unknown userdb driver %r (known: %s)" % (driver, ", ".join(DRIVERS))) from None
    return factory(args, ctx)
