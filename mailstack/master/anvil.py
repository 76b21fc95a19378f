# -*- test-case-name: tests.master.test_anvil -*-
"""Per-client connection counts shared by every process of a service (Postfix's anvil(8)).

SYNOPSIS
    ``counter_for(ctx, entry, config)`` gives an SMTP service the counter
    its ``smtpd_client_connection_count_limit`` uses: None (the service's
    own in-process count) when it runs in one process, else the master's
    :class:`AnvilCounter` (in the master) or the :class:`AnvilClient` of
    the worker's control channel (in a worker).

DESCRIPTION
    The master keeps one :class:`AnvilCounter`: connections per (service,
    client address).  Each worker reaches it over its control channel
    (its file descriptor 0, a unix socket pair with the master, see
    :mod:`mailstack.master.workers`) with a line protocol::

        connect SERVICE ADDRESS      -> the count including this connection, as digits
        disconnect SERVICE ADDRESS   (no answer)

    Answers come in the order of the requests.  The master counts each
    channel's connections apart as well, so that the connections of a
    worker that dies are forgotten with it.  The master's own sessions
    call the counter directly (synchronously); a worker's ``connect``
    returns a Deferred (one round trip on a local socket).  When the master
    is gone, a worker's pending and later ``connect`` calls answer 0 (the
    worker is exiting anyway).

    Unlike Postfix's anvil, only the concurrent connection count is kept
    (no rates): it is what mailstack's smtpd limits.
"""

import collections

from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

log = Logger(namespace="mailstack.anvil")


class AnvilCounter:
    """Concurrent connections per (service, client address), summed over every process."""

    def __init__(self):
        self._counts = {}
        self._owned = {}  # owner -> Counter of keys it holds

    def connect(self, service, address, owner=None):
        """Count a new connection; return the count including it."""
        key = (service, address)
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        if owner is not None:
            self._owned.setdefault(owner, collections.Counter())[key] += 1
        return count

    def disconnect(self, service, address, owner=None):
        """Forget a closed connection (an unknown one is ignored)."""
        key = (service, address)
        if owner is not None:
            held = self._owned.get(owner)
            if not held or not held[key]:
                return
            held[key] -= 1
            if not held[key]:
                del held[key]
        self._drop(key, 1)

    def count(self, service, address):
        """Return the current count of (service, address)."""
        return self._counts.get((service, address), 0)

    def release(self, owner):
        """Forget every connection ``owner`` still holds (its process is gone)."""
        for key, number in self._owned.pop(owner, {}).items():
            self._drop(key, number)

    def _drop(self, key, number):
        count = self._counts.get(key, 0) - number
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)

    def bound(self, service):
        """Return a counter for one service, with the ``connect(address)``/``disconnect(address)`` interface."""
        return _BoundCounter(self, service)


class _BoundCounter:
    def __init__(self, counter, service):
        self._counter = counter
        self._service = service

    def connect(self, address):
        return self._counter.connect(self._service, address)

    def disconnect(self, address):
        self._counter.disconnect(self._service, address)


class AnvilServer(LineReceiver):
    """The master's end of one worker's control channel."""

    delimiter = b"\n"
    MAX_LENGTH = 1024

    def __init__(self, counter):
        self.counter = counter
        self.worker = None

    def lineReceived(self, line):
        words = line.decode("ascii", "replace").split()
        if len(words) == 3 and words[0] == "connect":
            self.sendLine(b"%d" % self.counter.connect(words[1], words[2], owner=self))
        elif len(words) == 3 and words[0] == "disconnect":
            self.counter.disconnect(words[1], words[2], owner=self)
        else:
            log.warn("anvil: bad request {line!r} from process {pid}", line=line[:100],
                     pid=getattr(self.worker, "pid", None))

    def lineLengthExceeded(self, line):
        log.warn("anvil: request too long from process {pid}", pid=getattr(self.worker, "pid", None))
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.counter.release(self)


class AnvilClient(LineReceiver):
    """A worker's end of its control channel to the master.

    Args:
        on_lost: called once when the channel closes (the master is gone).
    """

    delimiter = b"\n"
    MAX_LENGTH = 1024

    def __init__(self, on_lost=None):
        self._on_lost = on_lost
        self._waiting = collections.deque()
        self.connected_to_master = False

    def connectionMade(self):
        self.connected_to_master = True

    def connect(self, service, address):
        """Count a connection in the master; return a Deferred firing with the count including it."""
        if not self.connected_to_master:
            return defer.succeed(0)
        waiting = defer.Deferred()
        self._waiting.append(waiting)
        self.sendLine(("connect %s %s" % (service, address)).encode("ascii", "replace"))
        return waiting

    def disconnect(self, service, address):
        """Forget a connection in the master."""
        if self.connected_to_master:
            self.sendLine(("disconnect %s %s" % (service, address)).encode("ascii", "replace"))

    def lineReceived(self, line):
        if not self._waiting:
            return
        try:
            count = int(line)
        except ValueError:
            count = 0
        self._waiting.popleft().callback(count)

    def connectionLost(self, reason):
        self.connected_to_master = False
        while self._waiting:
            self._waiting.popleft().callback(0)
        if self._on_lost is not None:
            on_lost, self._on_lost = self._on_lost, None
            on_lost()

    def bound(self, service):
        """Return a counter for one service (``connect(address)`` returns a Deferred)."""
        return _BoundCounter(self, service)


def anvil(ctx):
    """Return the master's process-wide :class:`AnvilCounter`."""
    return ctx.shared("anvil", AnvilCounter)


def counter_for(ctx, entry, config):
    """Return the connection counter for a service, or None when it runs in one process.

    Returns:
        None with ``process_min_avail = 1`` (the service counts alone);
        in the master, the shared :class:`AnvilCounter` bound to the
        service; in a worker, its :class:`AnvilClient` bound to it.
    """
    from mailstack.app import service_processes
    if ctx.control is not None:
        return ctx.control.bound(entry.name)
    if service_processes(entry, config) > 1:
        return anvil(ctx).bound(entry.name)
    return None
