# -*- test-case-name: tests.pop3d.test_commands -*-
"""The reply-carrying error of POP3 commands.

A command raises :class:`Reply` with the complete ``-ERR`` line; the
protocol sends it at the command boundary and goes on with the next
command.  Anything else a command raises is our fault: it is logged with
its traceback and the client gets ``-ERR [SYS/TEMP]`` (RFC 3206).
"""


class Reply(Exception):
    """A POP3 error reply; ``line`` (str) is sent as it is."""

    def __init__(self, line):
        super().__init__(line)
        self.line = line
