# -*- test-case-name: tests.admin.test_user -*-
"""``mailstack user``: manage the users of the passwd-file, show userdb information.

Usage::

    mailstack user add USER [--password P] [--scheme S] [--uid N] [--gid N] [--home DIR] [--quota SIZE]
    mailstack user passwd USER [--password P] [--scheme S]
    mailstack user del USER
    mailstack user list
    mailstack user show USER

``add``, ``passwd``, ``del`` and ``list`` work on the passwd-file named
by the ``passdb`` parameter (``passwd-file:PATH``; ``%d`` etc. are expanded
for the user), editing it under a lock and replacing it atomically.
Without ``--password`` the password is asked on the terminal, or read from
standard input.  The scheme defaults to ``default_pass_scheme``; uid and
gid to those of the user running the command.  User names are normalised
as logins are (``auth_default_realm``, ``auth_username_format``).

``show`` asks the configured userdb, as ``doveadm user``: one
``name=value`` a line, at least ``uid``, ``gid``, ``home`` and
``mail`` (from ``mail_location`` when the userdb gives none).  It exits
with status 67 (EX_NOUSER) when the user does not exist.
"""

import os
import sys

from twisted.internet import defer, task
from twisted.python.failure import Failure

from mailstack.admin.pw import read_password
from mailstack.auth import passwd_edit
from mailstack.auth import username as usernames
from mailstack.auth.passdb.base import parse_args
from mailstack.auth.schemes import registry as schemes
from mailstack.auth.service import AuthService, AuthTemporaryError
from mailstack.config import maincf
from mailstack.config.maincf import ConfigError

DESCRIPTION = __doc__.split("\n", 2)[2]

EX_NOUSER = 67
EX_TEMPFAIL = 75


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    add = sub.add_parser("add", help="add a user to the passwd-file")
    add.add_argument("user")
    add.add_argument("--password", "-p")
    add.add_argument("--scheme", "-s")
    add.add_argument("--uid", type=int)
    add.add_argument("--gid", type=int)
    add.add_argument("--home", default="")
    add.add_argument("--quota", help="storage quota, e.g. 1G (userdb_quota_rule=*:storage=SIZE)")
    passwd = sub.add_parser("passwd", help="change a user's password")
    passwd.add_argument("user")
    passwd.add_argument("--password", "-p")
    passwd.add_argument("--scheme", "-s")
    delete = sub.add_parser("del", help="remove a user from the passwd-file")
    delete.add_argument("user")
    sub.add_parser("list", help="list the users of the passwd-file")
    show = sub.add_parser("show", help="print a user's userdb fields, as doveadm user")
    show.add_argument("user")


def run_sync(coroutine):
    """Run an auth coroutine whose I/O is synchronous (CLI use) and return its result.

    Raises:
        whatever the coroutine raises.
    """
    result = []
    deferred = defer.ensureDeferred(coroutine)
    deferred.addBoth(result.append)
    if not result:
        raise RuntimeError("auth call did not complete synchronously")
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]


def cli_service(config):
    """An AuthService for command-line tools: lookups run inline, no reactor."""
    return AuthService(config, None, clock=task.Clock(), run_in_thread=lambda fn, *a: defer.maybeDeferred(fn, *a))


def _normalise(config, user):
    try:
        return usernames.normalise(user, config["auth_username_format"], config["auth_default_realm"])
    except usernames.UsernameError as err:
        raise ConfigError("user %r: %s" % (user, err)) from None


def passwd_path(config, user=""):
    """Return the passwd-file path of ``passdb`` (expanded for ``user``).

    Raises:
        ConfigError: when the passdb is not a passwd-file.
    """
    driver, args = config["passdb"]
    if driver != "passwd-file":
        raise ConfigError("passdb is %s:%s; mailstack user edits passwd-file passdbs only" % (driver, args))
    _, path = parse_args(args, ("scheme", "username_format"))
    if "%" in path:
        if not user:
            raise ConfigError("passdb path %s depends on the user; give one" % path)
        path = usernames.expand(path, user)
    return path


def _stored(config, args, password):
    scheme = args.scheme or config["default_pass_scheme"]
    try:
        return schemes.generate(scheme, password)
    except (schemes.SchemeError, schemes.SchemeUnavailable) as err:
        raise ConfigError(str(err)) from None


def run(args):
    config = maincf.load(args.config)
    try:
        return _ACTIONS[args.action](config, args)
    except passwd_edit.PasswdEditError as err:
        raise ConfigError(str(err)) from None


def _add(config, args):
    user = _normalise(config, args.user)
    path = passwd_path(config, user)
    if args.scheme:
        # An unknown scheme is reported before the password is asked for.
        try:
            schemes.lookup(args.scheme.partition(".")[0])
        except schemes.SchemeError as err:
            raise ConfigError(str(err)) from None
    stored = _stored(config, args, read_password(args.password))
    extra = ""
    if args.quota:
        extra = "userdb_quota_rule=*:storage=%s" % args.quota
    uid = os.getuid() if args.uid is None else args.uid
    gid = os.getgid() if args.gid is None else args.gid
    passwd_edit.add_user(path, passwd_edit.format_line(user, stored, uid, gid, home=args.home, extra=extra))
    print("mailstack: user %s added to %s" % (user, path))
    return 0


def _passwd(config, args):
    user = _normalise(config, args.user)
    path = passwd_path(config, user)
    if user not in passwd_edit.list_users(path):
        raise ConfigError("user %s does not exist in %s" % (user, path))
    passwd_edit.set_password(path, user, _stored(config, args, read_password(args.password)))
    print("mailstack: password of %s changed" % user)
    return 0


def _del(config, args):
    user = _normalise(config, args.user)
    path = passwd_path(config, user)
    passwd_edit.remove_user(path, user)
    print("mailstack: user %s removed from %s" % (user, path))
    return 0


def _list(config, args):
    for user in passwd_edit.list_users(passwd_path(config)):
        print(user)
    return 0


def _show(config, args):
    auth = cli_service(config)
    try:
        info = run_sync(auth.lookup_user(args.user))
    except AuthTemporaryError as err:
        sys.stderr.write("mailstack: userdb lookup failed: %s\n" % err)
        return EX_TEMPFAIL
    if info is None:
        sys.stderr.write("mailstack: userdb lookup: user %s doesn't exist\n" % args.user)
        return EX_NOUSER
    print("user=%s" % info.user)
    for name, value in info.fields():
        print("%s=%s" % (name, value))
    return 0


_ACTIONS = {"add": _add, "passwd": _passwd, "del": _del, "list": _list, "show": _show}
