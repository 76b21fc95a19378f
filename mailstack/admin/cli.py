# -*- test-case-name: tests.admin.test_cli -*-
"""The ``mailstack`` command: one entry point, Postfix/Dovecot-named subcommands.

``mailstack [--config DIR] COMMAND [ARGS]``.  Each subcommand lives in its
own module under :mod:`mailstack.admin` with two functions:
``add_arguments(parser)`` and ``run(args) -> exit status``.  They are
listed in :data:`COMMANDS`, in the order ``--help`` shows them.

The configuration directory is ``--config``, else ``$MAILSTACK_CONFIG``,
else ``/etc/mailstack``.  Errors are printed as ``mailstack: fatal: reason``
with a non-zero exit status, never as a traceback.
"""

import argparse
import importlib
import os
import sys

from mailstack.config.maincf import ConfigError

# name -> (module, one-line help)
COMMANDS = {
    "init": ("mailstack.admin.init", "write a complete, working configuration directory"),
    "postconf": ("mailstack.admin.conf", "show or edit main.cf parameters, as Postfix's postconf"),
    "postmap": ("mailstack.admin.postmap", "build, query and list lookup tables, as Postfix's postmap"),
    "newaliases": ("mailstack.admin.newaliases", "rebuild the alias database from $alias_database sources"),
    "pw": ("mailstack.admin.pw", "generate or check password hashes, as doveadm pw"),
    "user": ("mailstack.admin.user", "add, remove, list and show users (passwd-file, userdb)"),
    "auth": ("mailstack.admin.authtest", "test a user's login against the passdb, as doveadm auth test"),
    "postqueue": ("mailstack.admin.postqueue", "list or flush the mail queue, as Postfix's postqueue"),
    "mailq": ("mailstack.admin.mailq", "list the mail queue (postqueue -p)"),
    "postsuper": ("mailstack.admin.postsuper", "delete, hold, release or requeue queued mail, as Postfix's postsuper"),
    "postcat": ("mailstack.admin.postcat", "show a queued message, as Postfix's postcat -q"),
    "sendmail": ("mailstack.admin.sendmail", "submit a message from standard input, as sendmail(1)"),
    "mailbox": ("mailstack.store.admin", "list, show status of and resync a user's maildir folders, as doveadm mailbox"),
}


def _default_config():
    return os.environ.get("MAILSTACK_CONFIG", "/etc/mailstack")


def build_parser():
    """Return the argparse parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="mailstack",
        description="Administer a mailstack mail server (configuration, users, queue, tables).")
    parser.add_argument("-c", "--config", default=_default_config(), metavar="DIR",
                        help="configuration directory (default: $MAILSTACK_CONFIG or /etc/mailstack)")
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=summary, description=getattr(module, "DESCRIPTION", summary),
                                    formatter_class=argparse.RawDescriptionHelpFormatter,
                                    add_help=getattr(module, "ADD_HELP", True))
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def _version():
    from mailstack import __version__
    return "mailstack " + __version__


def main(argv=None):
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args._run(args) or 0
    except ConfigError as err:
        sys.stderr.write("mailstack: fatal: %s\n" % err)
        return 1
    except BrokenPipeError:
        return 0


def _alias_main(command, argv):
    """Run ``mailstack COMMAND`` for a Postfix-named program (sendmail, mailq, newaliases).

    Like Postfix's, these take ``-C DIR`` (or a main.cf path) for the
    configuration; otherwise ``$MAILSTACK_CONFIG`` or /etc/mailstack.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prefix = []
    if "-C" in argv:
        at = argv.index("-C")
        if at + 1 >= len(argv):
            sys.stderr.write("%s: fatal: -C needs a configuration directory\n" % command)
            return 64
        where = argv[at + 1]
        if os.path.basename(where) == "main.cf":
            where = os.path.dirname(where) or "."
        prefix = ["--config", where]
        del argv[at:at + 2]
    return main(prefix + [command] + argv)


def sendmail_main(argv=None):
    """The ``sendmail`` program: ``mailstack sendmail``, for applications that call sendmail(1)."""
    return _alias_main("sendmail", argv)


def mailq_main(argv=None):
    """The ``mailq`` program: ``mailstack mailq``."""
    return _alias_main("mailq", argv)


def newaliases_main(argv=None):
    """The ``newaliases`` program: ``mailstack newaliases``."""
    return _alias_main("newaliases", argv)


if __name__ == "__main__":
    sys.exit(main())
