"""The queue manager alone: incoming/ -> virtual agent -> maildir, CPU per message, no SMTP.

The end-to-end benchmark (``queue_delivery.py``) measures the queue
manager beside the SMTP server, on a shared machine whose other load moves
every figure.  This one runs only the delivery side, in this process, with
the real components (``MailQueue``, ``QueueManager``, ``Resolver``,
``VirtualAgent`` with the passwd-file userdb through ``AuthService``,
``StoreMailboxes`` over a ``MailStore``), and reports the process's own
CPU time per delivered message, user and system apart, which the other
load on the machine changes much less than rates.

Two ways to feed it (both measured):

* ``backlog``: ``--messages`` queue files are written into incoming/ first,
  then the queue manager starts and empties it (big scans, full batches);
* ``trickle``: messages are committed one by one at ``--rate`` per second
  while the queue manager runs, each waking it as the SMTP server does (one
  scan per wake-up, small batches).

Usage::

    .venv/bin/python benchmarks/queue_manager.py [--messages N] [--rate R] [--size BYTES] [--runs N]
"""

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.logger import globalLogBeginner  # noqa: E402

from mailstack.agents.mailbox import StoreMailboxes  # noqa: E402
from mailstack.agents.virtual import VirtualAgent  # noqa: E402
from mailstack.auth.service import AuthService  # noqa: E402
from mailstack.bounce.notices import Bouncer  # noqa: E402
from mailstack.common import maillog  # noqa: E402
from mailstack.config import maincf  # noqa: E402
from mailstack.queue import Envelope, MailQueue, Recipient  # noqa: E402
from mailstack.queue.qmgr import QueueManager  # noqa: E402
from mailstack.rewrite.resolve import Resolver  # noqa: E402
from mailstack.store.store import MailStore  # noqa: E402

RECIPIENT = "joe@example.test"


def _config(directory):
    text = ("myhostname = mail.example.test\nmydomain = example.test\nmydestination = $myhostname, localhost\n"
            "queue_directory = {d}/queue\ndata_directory = {d}/data\nalias_maps =\n"
            "virtual_mailbox_domains = example.test\nmail_location = maildir:{d}/mail/%d/%n/Maildir\n"
            "passdb = passwd-file:{d}/passwd\nuserdb = passwd-file:{d}/passwd\n").format(d=directory)
    with open(os.path.join(directory, "passwd"), "w") as handle:
        handle.write("%s:{PLAIN}secret::::::\n" % RECIPIENT)
    env = maincf.Environment(hostname="mail.example.test", config_directory=directory)
    return maincf.Config(maincf.parse_lines(text), env).validate()


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _submit(queue, body):
    writer = queue.new_message()
    writer.write(body)
    await writer.commit(Envelope("sender@example.org", [Recipient(RECIPIENT)]))


async def _wait(predicate):
    while not predicate():
        await task.deferLater(reactor, 0.002, lambda: None)


async def run_once(mode, count, rate, size):
    """Deliver ``count`` messages in ``mode``; return (msg/s, user ms/msg, system ms/msg, writes' user, system).

    The last two are the CPU of writing the queue files (measured in
    backlog mode, None in trickle mode, where writes and deliveries mix).
    """
    directory = tempfile.mkdtemp(prefix="mailstack-qmgr-bench-")
    try:
        config = _config(directory)
        queue = MailQueue(config["queue_directory"], reactor, hostname="mail.example.test")
        store = MailStore(reactor, config, use_inotify=False, poll_interval=0)
        auth = AuthService(config, reactor)
        agents = {"virtual": VirtualAgent(config, StoreMailboxes(store), None, auth.lookup_user, clock=reactor)}
        qmgr = QueueManager(queue, config, agents, Resolver(config), Bouncer(queue, config, reactor), reactor)
        new = os.path.join(directory, "mail", "example.test", "joe", "Maildir", "new")
        body = b"Subject: benchmark\n\n" + (b"x" * 72 + b"\n") * max(1, size // 73)

        def delivered():
            try:
                return len(os.listdir(new))
            except FileNotFoundError:
                return 0
        writes = (None, None)
        if mode == "backlog":
            before = _cpu()
            for _ in range(count):
                await _submit(queue, body)
            writes = tuple((a - b) * 1000.0 / count for a, b in zip(_cpu(), before))
            before, start = _cpu(), time.monotonic()
            qmgr.start()
        else:
            qmgr.start()
            before, start = _cpu(), time.monotonic()
            commits = []
            for i in range(count):
                # Not awaited: commits overlap, as the SMTP server's sessions do.
                commits.append(defer.ensureDeferred(_submit(queue, body)))
                pause = start + (i + 1) / rate - time.monotonic()
                if pause > 0:
                    await task.deferLater(reactor, pause, lambda: None)
            await defer.gatherResults(commits)
        await _wait(lambda: delivered() >= count and not qmgr.active)
        elapsed, after = time.monotonic() - start, _cpu()
        await qmgr.stop()
        store.close()
        user, system = ((a - b) * 1000.0 / count for a, b in zip(after, before))
        return (count / elapsed, user, system) + writes
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def main(args):
    # The real maillog observer, as twistd installs it, writing to a file.
    log_directory = tempfile.mkdtemp(prefix="mailstack-qmgr-bench-log-")
    observer = maillog.observer_for(_config(log_directory), False, reactor=reactor)
    globalLogBeginner.beginLoggingTo([observer], discardBuffer=True, redirectStandardIO=False)
    results = {"backlog": [], "trickle": []}
    await run_once("backlog", 100, args.rate, args.size)  # warm up
    for _ in range(args.runs):
        for mode in results:
            results[mode].append(await run_once(mode, args.messages, args.rate, args.size))
    print("%d messages of ~%d bytes, trickle at %d msg/s, median of %d runs, load average %.2f"
          % (args.messages, args.size, args.rate, args.runs, os.getloadavg()[0]))
    write_user = statistics.median(r[3] for r in results["backlog"])
    write_system = statistics.median(r[4] for r in results["backlog"])
    print("%-22s %8s %12s %8s %8s" % ("", "msg/s", "CPU ms/msg", "user", "system"))
    for mode, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        user = statistics.median(r[1] for r in rows)
        system = statistics.median(r[2] for r in rows)
        print("%-22s %8.0f %12.2f %8.2f %8.2f" % (mode, rate, user + system, user, system))
        if mode == "trickle":
            print("%-22s %8s %12.2f %8.2f %8.2f" % ("trickle minus writes", "", user + system - write_user
                                                    - write_system, user - write_user, system - write_system))
    print("%-22s %8s %12.2f %8.2f %8.2f" % ("(queue file writes)", "", write_user + write_system, write_user,
                                            write_system))


def _run(args):
    outcome = []
    done = defer.ensureDeferred(main(args))
    done.addBoth(outcome.append).addBoth(lambda _: reactor.stop())
    reactor.run()
    if outcome and hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=500, help="trickle mode: messages per second")
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    _run(parser.parse_args())
