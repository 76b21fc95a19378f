# -*- test-case-name: tests.queue.test_admin -*-
"""``mailstack mailq``: list the mail queue (``postqueue -p``).
"""

import sys

from mailstack.admin import queue as tools

DESCRIPTION = __doc__


def add_arguments(parser):
    pass


def run(args):
    tools.list_queue(tools.open_queue(args.config), sys.stdout)
    return 0
