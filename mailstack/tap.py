# -*- test-case-name: tests.test_app -*-
"""Options and makeService for the twistd plugin (``twisted/plugins/mailstack_plugin.py``)."""

import os
import sys

from twisted.python import usage

from mailstack.config.maincf import ConfigError

DEFAULT_CONFIG_DIRECTORY = os.environ.get("MAILSTACK_CONFIG", "/etc/mailstack")


class Options(usage.Options):
    """twistd mailstack [--config DIR] [--verbose]"""

    synopsis = "[--config DIR] [--verbose]"
    longdesc = ("Runs every service listed in DIR/master.cf (SMTP, submission, POP3, IMAP, "
                "the queue manager, the auth socket) with the settings of DIR/main.cf.")
    optParameters = [
        ["config", "c", DEFAULT_CONFIG_DIRECTORY, "The configuration directory (main.cf, master.cf)."],
    ]
    optFlags = [["verbose", "v", "Log debug events too."]]


def makeService(options):
    """Build the root service; a configuration error exits with status 1 and file:line: reason."""
    from mailstack import app

    parent = getattr(options, "parent", None) or {}
    foreground = bool(parent.get("nodaemon", True)) if hasattr(parent, "get") else True
    try:
        return app.make_service(options["config"], foreground=foreground, verbose=options["verbose"])
    except ConfigError as err:
        sys.stderr.write("mailstack: fatal: %s\n" % err)
        raise SystemExit(1)
