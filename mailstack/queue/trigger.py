# -*- test-case-name: tests.queue.test_trigger -*-
"""The queue manager's wakeup trigger: ``$queue_directory/public/qmgr``.

SYNOPSIS
    ``listen(reactor, queue_directory, wakeup)`` in the process that runs
    the queue manager; ``QueueTrigger(reactor, path).pull()`` anywhere else.

DESCRIPTION
    Postfix's qmgr(8) listens on ``public/qmgr`` and other programs "pull
    the trigger" by writing one byte to it, so that new mail is seen at
    once instead of at the next queue scan.  mailstack does the same with
    a unix datagram socket.  :meth:`MailQueue.notify
    <mailstack.queue.store.MailQueue.notify>` wakes an in-process queue
    manager directly; in a process that has none (an SMTP worker started
    for ``process_min_avail``, a second twistd running only the SMTP
    services, ``sendmail -bs``) it pulls this trigger instead.

    A pull sends one datagram, non-blocking; every error is ignored (no
    queue manager running, a full socket buffer): the queue manager's
    ``qmgr_scan_interval`` scan remains the fallback, so a lost wakeup
    only costs latency.  Pulls are coalesced: the first one of a reactor
    turn is sent at once, the others of that turn are dropped, since the
    queue manager scans the whole of incoming/ when woken.  The listener
    ignores what a datagram contains.

FILES
    ``public/qmgr``: the socket (mode 0622, as Postfix's public FIFOs:
    anyone who may see ``public/`` may pull).  A socket file left by a
    queue manager that died is removed at the next start; when another
    live queue manager already listens there (several hosts or processes
    sharing the queue), :func:`listen` leaves it to that one and returns
    None.
"""

import errno
import os
import socket
import stat

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

log = Logger(namespace="mailstack.qmgr")

TRIGGER_DIR = "public"
TRIGGER_NAME = "qmgr"
SOCKET_MODE = 0o622


def trigger_path(queue_directory):
    """Return the path of the queue manager's trigger socket under ``queue_directory``."""
    return os.path.join(queue_directory, TRIGGER_DIR, TRIGGER_NAME)


class QueueTrigger:
    """Pulls the queue manager's trigger: one datagram per reactor turn at most.

    Args:
        reactor: provides ``callLater`` (coalescing); None sends every pull.
        path: the socket path (see :func:`trigger_path`).
    """

    def __init__(self, reactor, path):
        self.reactor = reactor
        self.path = path
        self._pulled = False
        self.sent = 0

    def pull(self):
        """Wake the queue manager listening on the socket, if any; never raises, never blocks."""
        if self._pulled:
            return
        if self.reactor is not None:
            self._pulled = True
            self.reactor.callLater(0, self._next_turn)
        # A socket per pull (at most one per turn): nothing to close when
        # the queue object goes away.
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                sender.setblocking(False)
                sender.sendto(b"W", self.path)
            self.sent += 1
        except OSError:
            pass  # nobody listens, or its buffer is full: the periodic scan finds the mail

    def _next_turn(self):
        self._pulled = False


class _TriggerProtocol(DatagramProtocol):
    noisy = False

    def __init__(self, wakeup):
        self._wakeup = wakeup

    def datagramReceived(self, data, addr):
        try:
            self._wakeup()
        except Exception:
            log.failure("queue manager wakeup failed")


def _someone_listens(path):
    """True when a live process is bound to the datagram socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(path)
        return True
    except OSError as err:
        if err.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise
    finally:
        probe.close()


def listen(reactor, queue_directory, wakeup):
    """Listen on ``public/qmgr``; call ``wakeup()`` for each datagram received.

    Returns:
        the listening port (``stopListening()`` it and :func:`unlink` the
        path when done), or None when another live queue manager already
        listens there or the socket cannot be made (a warning is logged).
    """
    path = trigger_path(queue_directory)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        log.warn("cannot use trigger {path}: {error}", path=path, error=err.strerror or err)
        return None
    try:
        if mode is not None:
            if not stat.S_ISSOCK(mode):
                os.unlink(path)
            elif _someone_listens(path):
                log.info("trigger {path} is served by another queue manager", path=path)
                return None
            else:
                os.unlink(path)  # left by a queue manager that died
        return reactor.listenUNIXDatagram(path, _TriggerProtocol(wakeup), mode=SOCKET_MODE)
    except Exception as err:  # OSError, or CannotListenError from the reactor
        log.warn("cannot listen on trigger {path}: {error}", path=path, error=err)
        return None


def unlink(port):
    """Stop a port made by :func:`listen` and remove its socket file."""
    if port is None:
        return None
    path = port.getHost().name
    result = port.stopListening()
    try:
        os.unlink(path)
    except OSError:
        pass
    return result
