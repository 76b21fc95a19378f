# -*- test-case-name: tests.queue.test_admin -*-
"""``mailstack postqueue``: list (-p) or flush (-f, -i ID, -s SITE) the mail queue, as Postfix's postqueue(1).

See :mod:`mailstack.admin.queue` for the output format and how a flush
reaches a running queue manager.
"""

import sys

from mailstack.admin import queue as tools

DESCRIPTION = __doc__.split("\n", 2)[2]


def add_arguments(parser):
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("-p", dest="list", action="store_true", help="list the queue (mailq)")
    group.add_argument("-f", dest="flush", action="store_true", help="flush: deliver all deferred mail now")
    group.add_argument("-i", dest="queue_id", metavar="ID", help="deliver one deferred message now")
    group.add_argument("-s", dest="site", metavar="SITE", help="deliver deferred mail for a destination now")


def run(args):
    queue = tools.open_queue(args.config)
    if args.list:
        tools.list_queue(queue, sys.stdout)
    elif args.flush:
        tools.request_flush(queue)
    elif args.queue_id:
        if not tools.is_queue_id(args.queue_id):
            sys.stderr.write("postqueue: fatal: invalid queue id: %s\n" % args.queue_id)
            return 1
        tools.request_flush(queue, [args.queue_id])
    else:
        tools.request_flush(queue, tools.site_messages(queue, args.site))
    return 0
