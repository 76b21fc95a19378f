# -*- test-case-name: tests.admin.test_pw -*-
"""``mailstack pw``: generate or check password hashes, as Dovecot's ``doveadm pw``.

Usage::

    mailstack pw [-s SCHEME] [-p PASSWORD]      print the {SCHEME} hash of a password
    mailstack pw -l                             list the supported schemes
    mailstack pw -t HASH [-p PASSWORD]          check a password against a hash

The scheme defaults to ``default_pass_scheme`` of the configuration (or
CRYPT without one); ``.hex``/``.b64`` suffixes choose the encoding
(``-s SHA256.HEX``).  Without ``-p`` the password is read from the terminal
(twice, without echo) or, when standard input is not a terminal, from its
first line.  ``-t`` prints ``HASH (verified)`` and exits 0 on a match, and
exits 1 with the reason otherwise; ``-t`` with ``-s`` also checks that the
hash is in that scheme.
"""

import getpass
import os
import sys

from mailstack.auth.schemes import registry as schemes
from mailstack.config import maincf
from mailstack.config.maincf import ConfigError

DESCRIPTION = __doc__.split("\n", 2)[2]


def add_arguments(parser):
    parser.add_argument("-s", "--scheme", help="the password scheme (default: $default_pass_scheme)")
    parser.add_argument("-p", "--password", help="the password (default: ask, or read standard input)")
    parser.add_argument("-l", "--list", action="store_true", help="list the supported schemes")
    parser.add_argument("-t", "--test", metavar="HASH", help="check the password against HASH")
    parser.add_argument("-u", "--user", help="accepted for doveadm compatibility; no scheme uses it")


def read_password(given, confirm=True):
    """Return ``given``, else a password read from the terminal (twice) or from standard input.

    Raises:
        ConfigError: when the two entries differ or nothing was read.
    """
    if given is not None:
        return given
    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass("Enter new password: " if confirm else "Password: ")
        if confirm and getpass.getpass("Retype new password: ") != first:
            raise ConfigError("passwords don't match")
        password = first
    else:
        line = sys.stdin.readline() if sys.stdin is not None else ""
        if not line:
            raise ConfigError("no password given (use -p or standard input)")
        password = line.rstrip("\r\n")
    if not password:
        raise ConfigError("empty passwords are not allowed")
    return password


def default_scheme(config_directory):
    """Return ``default_pass_scheme`` from the configuration, or CRYPT when there is none."""
    if not os.path.exists(os.path.join(config_directory, "main.cf")):
        return "CRYPT"
    return maincf.load(config_directory)["default_pass_scheme"]


def run(args):
    if args.list:
        print(" ".join(schemes.names()))
        return 0
    if args.test is not None:
        return _test(args)
    scheme = args.scheme or default_scheme(args.config)
    password = read_password(args.password)
    try:
        print(schemes.generate(scheme, password))
    except (schemes.SchemeError, schemes.SchemeUnavailable) as err:
        raise ConfigError(str(err)) from None
    return 0


def _test(args):
    try:
        stored = schemes.parse(args.test, args.scheme or default_scheme(args.config))
    except schemes.SchemeError as err:
        raise ConfigError(str(err)) from None
    if args.scheme and stored.explicit and stored.scheme is not schemes.lookup(args.scheme.partition(".")[0]):
        sys.stderr.write("mailstack: fatal: hash is %s, not %s\n" % (stored.label, args.scheme.upper()))
        return 1
    password = read_password(args.password, confirm=False)
    try:
        ok = schemes.verify(password, stored)
    except (schemes.SchemeError, schemes.SchemeUnavailable) as err:
        raise ConfigError(str(err)) from None
    if not ok:
        sys.stderr.write("mailstack: fatal: reverse password verification check failed: Password mismatch\n")
        return 1
    print("%s (verified)" % args.test)
    return 0
