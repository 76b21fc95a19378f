# -*- test-case-name: tests.queue.test_admin -*-
"""``mailstack postcat -q ID``: show a queued message's envelope and content, as Postfix's postcat(1).
"""

import sys

from mailstack.admin import queue as tools

DESCRIPTION = __doc__


def add_arguments(parser):
    parser.add_argument("-q", dest="queue_id", required=True, metavar="ID", help="the queue id to show")


def run(args):
    queue = tools.open_queue(args.config)
    if not tools.is_queue_id(args.queue_id) or not tools.postcat(queue, args.queue_id, sys.stdout):
        sys.stderr.write("postcat: fatal: open queue file %s: No such file or directory\n" % args.queue_id)
        return 1
    return 0
