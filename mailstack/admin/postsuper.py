# -*- test-case-name: tests.queue.test_admin -*-
"""``mailstack postsuper``: delete, hold, release and requeue queued mail, as Postfix's postsuper(1).

``-d ID|ALL [queue]`` delete, ``-h ID|ALL`` put on hold, ``-H ID|ALL``
release from hold, ``-r ID|ALL`` requeue, ``-s`` check the queue
structure.  ``-`` as ID reads queue ids from standard input.  The options
may be repeated.
"""


from mailstack.admin import queue as tools

DESCRIPTION = __doc__.split("\n", 2)[2]


def add_arguments(parser):
    parser.add_argument("-d", dest="delete", action="append", default=[], metavar="ID", help="delete messages")
    parser.add_argument("-h", dest="hold", action="append", default=[], metavar="ID", help="put messages on hold")
    parser.add_argument("-H", dest="release", action="append", default=[], metavar="ID",
                        help="release messages from hold")
    parser.add_argument("-r", dest="requeue", action="append", default=[], metavar="ID", help="requeue messages")
    parser.add_argument("-s", dest="structure", action="store_true", help="check and repair the queue structure")
    parser.add_argument("queue", nargs="?", choices=tools.POSTSUPER_QUEUES, help="limit -d to one queue")
    parser.add_argument("--help", action="help", help="show this help message and exit")


ADD_HELP = False


def run(args):
    queue = tools.open_queue(args.config)
    queues = (args.queue,) if args.queue else tools.POSTSUPER_QUEUES
    if args.structure:
        tools.structure_check(queue)
    for action, words in (("d", args.delete), ("h", args.hold), ("H", args.release), ("r", args.requeue)):
        if words:
            tools.postsuper(queue, action, words, queues if action == "d" else tools.POSTSUPER_QUEUES)
    return 0
