# -*- test-case-name: tests.test_workers -*-
"""A worker process of a listening service: ``python -m mailstack.worker``.

SYNOPSIS
    ``python -m mailstack.worker --config DIR --service NAME --socket FD:FAMILY ...
    [--master-pid PID] [--foreground] [--verbose]``

DESCRIPTION
    Started by the master (:mod:`mailstack.master.workers`) for services
    with ``process_min_avail`` above 1, never by hand.  It reads main.cf and
    master.cf like the master, builds the one service NAME with the
    program's own ``make_service`` (so the factory, the ``-o`` overrides
    and implicit TLS are the master's), and adopts the listening sockets
    it inherited as FD (``inet``, ``inet6`` or ``unix``) instead of
    binding them.

    File descriptor 0 is the control channel to the master (a unix socket
    pair, :class:`mailstack.master.anvil.AnvilClient`): per-client
    connection counts go through it, and its end-of-file means the master
    is gone, so the worker stops.  SIGTERM stops it too; SIGINT is
    ignored (a ^C in the terminal reaches the master, which stops its
    workers itself).  Log lines go where the master's go (standard output
    with ``--foreground``, else the log file), with the worker's pid.

EXIT STATUS
    0 after a stop; 1 for a configuration error (logged as ``fatal:``).
"""

import argparse
import signal
import socket
import sys

from twisted.internet import protocol
from twisted.logger import Logger, globalLogBeginner

from mailstack import app
from mailstack.common import maillog
from mailstack.config import maincf, mastercf
from mailstack.config.maincf import ConfigError

_FAMILIES = ("inet", "inet6", "unix")


def _socket_arg(text):
    fd, _, family = text.partition(":")
    if not fd.isdigit() or family not in _FAMILIES:
        raise argparse.ArgumentTypeError("expected FD:FAMILY (family one of %s)" % ", ".join(_FAMILIES))
    return int(fd), family


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="mailstack.worker", description="A worker process of a master.cf service.")
    parser.add_argument("--config", required=True, help="the configuration directory")
    parser.add_argument("--service", required=True, help="the master.cf service name")
    parser.add_argument("--socket", type=_socket_arg, action="append", default=[], dest="sockets",
                        help="an inherited listening socket, FD:FAMILY (once per listener)")
    parser.add_argument("--master-pid", type=int, default=0)
    parser.add_argument("--foreground", action="store_true", help="log to standard output")
    parser.add_argument("--verbose", action="store_true", help="log debug events too")
    return parser.parse_args(argv)


def build(reactor, args, control):
    """Return the worker's service for ``args`` (see :func:`parse_args`).

    Raises:
        ConfigError: when the configuration is bad or the service is unknown or not multi-process.
    """
    config = maincf.load(args.config)
    entries = {entry.name: entry for entry in mastercf.load(args.config)}
    entry = entries.get(args.service)
    if entry is None or entry.endpoint is None:
        raise ConfigError("master.cf: no listening service %r" % args.service)
    ctx = app.ServerContext(reactor, config, args.config, foreground=args.foreground, verbose=args.verbose,
                            inherited=list(args.sockets), control=control)
    module = app.program_module(entry.program)
    if module is None:
        raise ConfigError("%s: program %s is not available in this build" % (entry.where, entry.program))
    service_config = config.with_overrides(entry.overrides) if entry.overrides else config
    return entry, module.make_service(ctx, entry, service_config)


def main(argv=None):
    """Run a worker until SIGTERM or the master's end; return the exit status."""
    from twisted.internet import reactor  # the program's entry point: the one global reactor use

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = maincf.load(args.config)
    except ConfigError as err:
        sys.stderr.write("mailstack/worker: fatal: %s\n" % err)
        return 1
    observer = maillog.observer_for(config, args.foreground, args.verbose, reactor)
    globalLogBeginner.beginLoggingTo([observer], discardBuffer=True, redirectStandardIO=False)
    log = Logger(namespace="mailstack.master")
    status = []

    def master_gone():
        if reactor.running:
            log.info("master pid {pid} is gone: worker exiting", pid=args.master_pid)
            reactor.stop()

    from mailstack.master.anvil import AnvilClient
    control = AnvilClient(on_lost=master_gone)
    try:
        entry, root = build(reactor, args, control)
    except ConfigError as err:
        log.critical("{error}", error=err)
        return 1
    log = Logger(namespace="mailstack." + entry.program)

    def start():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            factory = protocol.Factory.forProtocol(lambda: control)
            factory.noisy = False
            reactor.adoptStreamConnection(0, socket.AF_UNIX, factory)
            root.startService()
        except Exception:
            log.failure("worker for service {name} cannot start", name=entry.name, service=entry.name)
            status.append(1)
            reactor.stop()
            return
        log.info("worker of service {name} (master pid {master}) accepting on {count} socket(s)",
                 name=entry.name, master=args.master_pid, count=len(args.sockets), service=entry.name)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: root.stopService() if root.running else None)
    reactor.run()
    return status[0] if status else 0


if __name__ == "__main__":
    sys.exit(main())
