# -*- test-case-name: tests.admin.test_user -*-
"""``mailstack auth test USER [PASSWORD]``: check a login, as ``doveadm auth test``.

The password is checked by the configured passdb exactly as a login would
be (user name normalisation, master users with ``user*master``), but
without the failure delay.  Without PASSWORD it is asked on the terminal or
read from standard input.

On success it prints ``passdb: USER auth succeeded`` and the passdb's extra
fields (never the password) and exits 0.  On failure it prints ``passdb:
USER auth failed`` and the reason, and exits 77 (EX_NOPERM); an internal
failure (passdb unreadable) exits 75 (EX_TEMPFAIL).
"""

import sys

from mailstack.admin.pw import read_password
from mailstack.admin.user import cli_service, run_sync
from mailstack.auth.service import AuthRequest, AuthTemporaryError
from mailstack.config import maincf

DESCRIPTION = __doc__.split("\n", 2)[2]

EX_NOPERM = 77
EX_TEMPFAIL = 75


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    test = sub.add_parser("test", help="check a user's password against the passdb")
    test.add_argument("user")
    test.add_argument("password", nargs="?")
    test.add_argument("-x", "--service", default="doveadm", help="the service name in log lines")


def run(args):
    config = maincf.load(args.config)
    auth = cli_service(config)
    password = read_password(args.password, confirm=False)
    request = AuthRequest(args.service, secure=True)
    step = run_sync(auth.check_plain(args.user, password, request))
    if not step.ok:
        print("passdb: %s auth failed" % args.user)
        # The step's reason is "driver(user,ip): why"; show the why.
        sys.stderr.write("mailstack: %s\n" % step.reason.split("): ", 1)[-1])
        return EX_TEMPFAIL if step.temporary else EX_NOPERM
    print("passdb: %s auth succeeded" % args.user)
    try:
        fields = run_sync(auth.passdb_fields(step.user)) or {}
    except AuthTemporaryError:
        fields = {}
    fields["user"] = step.user
    print("extra fields:")
    for name in sorted(fields):
        value = fields[name]
        print("  %s=%s" % (name, value) if value != "" else "  %s" % name)
    return 0
