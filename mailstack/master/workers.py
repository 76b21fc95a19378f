# -*- test-case-name: tests.test_workers -*-
"""Worker processes of a listening service (``process_min_avail``).

SYNOPSIS
    ``smtp tcp:25 -o process_min_avail=2`` in master.cf, or
    ``process_min_avail = 2`` in main.cf for every smtpd, pop3d and imapd
    service.

DESCRIPTION
    One twistd process saturates one CPU core.  With ``process_min_avail =
    N`` (Dovecot's name for its high-performance mode: one process per
    core, each serving many clients), the master process binds the
    service's listening sockets as usual and keeps serving on them, and
    :class:`WorkerPool` starts N-1 worker processes
    (``python -m mailstack.worker``, see :mod:`mailstack.worker`) that
    adopt the very same sockets.  The kernel hands each new connection to
    whichever process accepts first, so the load spreads over the cores
    without a proxy in between.  A worker builds the service exactly as the
    master does (same :func:`mailstack.app.listener_service`, same ``-o``
    overrides, implicit TLS for ``ssl:`` endpoints).

    Each worker's file descriptor 0 is one end of a unix socket pair whose
    other end the master keeps: end-of-file there tells the worker that the
    master is gone (it then exits), and the same channel carries the
    per-client connection counts of :mod:`mailstack.master.anvil`.  Worker
    log lines go to the master's destination (standard output under
    ``twistd -n``, else the log file) with the worker's pid, written whole
    (see :mod:`mailstack.common.maillog`).

    A worker that exits while the master runs is logged as Postfix's
    master(8) does (``warning: process /.../smtpd pid 1234 exit status 1``,
    ``... killed by signal 9``) and started again: after
    :data:`RESTART_DELAY`, doubled each time a worker of that slot dies
    within :data:`HEALTHY_RUN` of its start, up to :data:`MAX_RESTART_DELAY`
    (Postfix's ``service_throttle_time`` default).  When the master stops,
    every worker gets SIGTERM; stopping waits for them, at most
    :data:`STOP_GRACE` seconds before SIGKILL.

PROCESS LAYOUT
    ``twistd`` (master: every service, qmgr, pickup, auth, anvil) plus, per
    service with ``process_min_avail = N > 1``, N-1 workers, each running
    that one listener service only.  New mail queued by a worker wakes the
    master's queue manager through ``public/qmgr``
    (:mod:`mailstack.queue.trigger`).
"""

import os
import socket
import sys

from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.logger import Logger

log = Logger(namespace="mailstack.master")

RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 60.0
HEALTHY_RUN = 10.0
STOP_GRACE = 10.0
KILL_WAIT = 5.0

FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6", socket.AF_UNIX: "unix"}


def program_path(program):
    """Return the path logged for a worker of ``program``: its package directory, e.g. ``.../mailstack/smtpd``."""
    import mailstack
    return os.path.join(os.path.dirname(os.path.abspath(mailstack.__file__)), program)


def worker_environment():
    """Return the environment for worker processes: ours, with this mailstack importable first."""
    import mailstack
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(mailstack.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def exit_text(reason):
    """Return Postfix's wording for how a process ended: ``exit status N`` or ``killed by signal N``."""
    value = reason.value if hasattr(reason, "value") else reason
    if getattr(value, "signal", None) is not None:
        return "killed by signal %d" % value.signal
    return "exit status %d" % (getattr(value, "exitCode", None) or 0)


class _WorkerProcess(protocol.ProcessProtocol):
    """The master's view of one worker process."""

    def __init__(self, pool, slot, channel):
        self.pool = pool
        self.slot = slot
        self.channel = channel
        self.pid = None
        self.started = None
        self.ended = defer.Deferred()

    def connectionMade(self):
        self.pid = self.transport.pid

    def processEnded(self, reason):
        if self.channel is not None:
            self.channel.transport.loseConnection()
        self.pool._ended(self, reason)
        if not self.ended.called:
            self.ended.callback(None)


class WorkerPool(service.Service):
    """Runs ``count`` worker processes on the listening ports of one service.

    Args:
        ctx: the master's :class:`~mailstack.app.ServerContext`.
        entry: the master.cf :class:`~mailstack.config.mastercf.ServiceEntry`.
        listeners: the service's ``StreamServerEndpointService`` children,
            whose ports the workers adopt (in this order).
        count: how many workers (``process_min_avail`` - 1).
        channel_factory: ``() -> Protocol`` for the master's end of each
            worker's control channel (the anvil server); None for a plain one.
    """

    def __init__(self, ctx, entry, listeners, count, channel_factory=None):
        self.ctx = ctx
        self.reactor = ctx.reactor
        self.entry = entry
        self.listeners = listeners
        self.count = count
        self.channel_factory = channel_factory or protocol.Protocol
        self.executable = sys.executable
        self.path = program_path(entry.program)
        self.workers = {}        # slot -> _WorkerProcess
        self._delays = {}        # slot -> current restart delay
        self._restarts = {}      # slot -> pending DelayedCall
        self._sockets = None     # [(fd, family name)]
        self._stopping = False

    def startService(self):
        super().startService()
        self._stopping = False
        waiting = [listener._waitingForPort for listener in self.listeners]
        defer.gatherResults(waiting, consumeErrors=True).addCallback(self._ports_ready).addErrback(
            lambda f: log.failure("service {name}: no worker started", f, name=self.entry.name))

    def _ports_ready(self, ports):
        self._sockets = [(port.fileno(), FAMILIES[port.socket.family]) for port in ports]
        if self.running and not self._stopping:
            for slot in range(self.count):
                self._spawn(slot)

    def pids(self):
        """Return the pids of the running workers."""
        return sorted(w.pid for w in self.workers.values() if w.pid is not None)

    def _spawn(self, slot):
        self._restarts.pop(slot, None)
        if self._stopping or not self.running:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel = self.channel_factory()
        channel.worker = None
        try:
            factory = protocol.Factory.forProtocol(lambda: channel)
            factory.noisy = False
            self.reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, factory)
            child_fds = {0: theirs.fileno(), 1: 1, 2: 2}
            args = [self.executable, "-m", "mailstack.worker", "--config", self.ctx.config_directory,
                    "--service", self.entry.name, "--master-pid", str(os.getpid())]
            for index, (fd, family) in enumerate(self._sockets):
                child_fds[3 + index] = fd
                args += ["--socket", "%d:%s" % (3 + index, family)]
            if self.ctx.foreground:
                args.append("--foreground")
            if self.ctx.verbose:
                args.append("--verbose")
            worker = _WorkerProcess(self, slot, channel)
            channel.worker = worker
            worker.started = self.reactor.seconds()
            self.reactor.spawnProcess(worker, self.executable, args, env=worker_environment(),
                                      childFDs=child_fds)
        except Exception:
            log.failure("service {name}: cannot start a worker process", name=self.entry.name)
            if channel.transport is not None:
                channel.transport.loseConnection()
            self._schedule_restart(slot, failed=True)
            return
        finally:
            ours.close()
            theirs.close()
        self.workers[slot] = worker
        log.info("service {name}: process {pid} started", name=self.entry.name, pid=worker.pid)

    def _ended(self, worker, reason):
        if self.workers.get(worker.slot) is worker:
            del self.workers[worker.slot]
        if self._stopping or not self.running:
            return
        how = exit_text(reason)
        # Status 0 is a worker told to stop (a SIGTERM sent to the whole
        # process group by a supervisor, say): worth a line, not a warning.
        emit = log.info if how == "exit status 0" else log.warn
        emit("process {path} pid {pid} {how}", path=self.path, pid=worker.pid, how=how)
        lived = self.reactor.seconds() - (worker.started or 0)
        self._schedule_restart(worker.slot, failed=lived < HEALTHY_RUN)

    def _schedule_restart(self, slot, failed):
        if failed:
            delay = min(self._delays.get(slot, RESTART_DELAY / 2) * 2, MAX_RESTART_DELAY)
        else:
            delay = RESTART_DELAY
        self._delays[slot] = delay
        if delay >= 1:
            log.warn("{path}: process keeps dying -- throttling, next start in {delay:.0f}s",
                     path=self.path, delay=delay)
        self._restarts[slot] = self.reactor.callLater(delay, self._spawn, slot)

    def stopService(self):
        """SIGTERM every worker; fire when all have exited (SIGKILL after :data:`STOP_GRACE` seconds)."""
        super().stopService()
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        workers = list(self.workers.values())
        if not workers:
            return defer.succeed(None)
        for worker in workers:
            _signal(worker, "TERM")
        done = defer.DeferredList([w.ended for w in workers])
        timer = self.reactor.callLater(STOP_GRACE, self._kill, workers)
        done.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return done

    def _kill(self, workers):
        left = [w for w in workers if not w.ended.called]
        for worker in left:
            log.warn("process {path} pid {pid} did not stop in {grace:.0f}s: killing it",
                     path=self.path, pid=worker.pid, grace=STOP_GRACE)
            _signal(worker, "KILL")
        # processEnded follows SIGKILL at once; should it not, give up waiting.
        self.reactor.callLater(KILL_WAIT, lambda: [w.ended.callback(None) for w in left if not w.ended.called])


def _signal(worker, name):
    try:
        worker.transport.signalProcess(name)
    except (error.ProcessExitedAlready, OSError):
        pass
