#!/usr/bin/env python3
"""SMTP intake throughput: mailstack's smtpd against Postfix, side by side, driven by smtp-source.

Usage (as root, Postfix installed)::

    .venv/bin/python benchmarks/smtpd_throughput.py [--messages 2000] [--sessions 20] [--size 4096]
        [--rounds 1] [--skip-postfix] [--processes N]

Both servers run at once and the rounds alternate between them (mailstack,
Postfix, mailstack, ...), so load from other work on the machine hits both
alike; medians over the rounds are printed with the load average.

Each server gets the same load from Postfix's ``smtp-source`` (``-s`` parallel
sessions, ``-m`` messages of ``-l`` bytes, one recipient each) and must
queue every message durably before its 250:

- mailstack: ``twistd -n mailstack`` with one ``smtp`` service; the queue
  writer fsyncs each file and its directory in the reactor's thread pool.
  No queue manager runs, so messages stay in ``incoming/``.  With
  ``--processes N`` the service runs in N processes
  (``-o process_min_avail=N``: the master and N-1 workers on one socket)
  and the CPU counted is theirs together.
- Postfix: a private instance (``tests/interop/postfix.py``); every
  recipient gets ``HOLD`` (``check_recipient_access static:HOLD``) so the
  messages stay in ``hold/`` after cleanup has fsynced them, and no
  delivery work is counted.

Printed per server: messages/s, and the CPU seconds the server used per
1,000 messages (user+system from ``/proc``: for Postfix the master, its
live children and its reaped children).
"""

import argparse
import glob
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid, children=False):
    """Return user+system CPU seconds of ``pid`` (and of its reaped children)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    total = utime + stime + ((cutime + cstime) if children else 0)
    return total / TICKS


def _children(pid):
    result = []
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            result.append(int(path.split("/")[2]))
    return result


def _kworker_cpu():
    """CPU seconds of the kernel's worker threads (``kworker/*``), machine-wide.

    mailstack's fsyncs run as native AIO in kernel workers, not in its own
    process, so their CPU is added to mailstack's figure; the delta also
    holds any other writeback of the machine in that time, so it is an
    upper bound.
    """
    total = 0
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path) as handle:
                data = handle.read()
        except OSError:
            continue
        if data[data.index("(") + 1:].startswith("kworker"):
            fields = data.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _tree_cpu(pid):
    return _proc_cpu(pid, children=True) + sum(_proc_cpu(child) for child in _children(pid))


def smtp_source(port, messages, sessions, size):
    argv = ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", "bench@example.org", "-t", "sink@remote.example", "-M", "client.example.org",
            "127.0.0.1:%d" % port]
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise RuntimeError("smtp-source failed: %s %s" % (result.stdout, result.stderr))
    return elapsed


def _wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.recv(100)
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start on port %d" % port)


class MailstackServer:
    """``twistd -n mailstack`` with one ``smtp`` service, in a scratch directory."""

    def __init__(self, processes=1):
        self.name = "mailstack" if processes == 1 else "mailstack*%d" % processes
        self.directory = tempfile.mkdtemp(prefix="mailstack-bench-")
        self.etc = os.path.join(self.directory, "etc")
        self.processes = processes
        self.proc = self.log = None

    def start(self):
        env = dict(os.environ, PYTHONPATH=ROOT)
        bindir = os.path.dirname(sys.executable)
        subprocess.run([os.path.join(bindir, "mailstack"), "--config", self.etc, "init", "--ports", "dev",
                        "--domain", "example.test"], check=True, capture_output=True, env=env)
        self.port = free_port()
        with open(os.path.join(self.etc, "master.cf"), "w") as handle:
            handle.write("smtp tcp:%d:interface=127.0.0.1 -o process_min_avail=%d\n" % (self.port, self.processes))
        with open(os.path.join(self.etc, "main.cf"), "a") as handle:
            handle.write("smtpd_peername_lookup = no\nsmtpd_client_connection_count_limit = 0\n")
        # O_APPEND: the workers write to the same file (their own whole lines).
        self.log = open(os.path.join(self.directory, "maillog"), "a")
        self.proc = subprocess.Popen([os.path.join(bindir, "twistd"), "-n", "--pidfile=", "mailstack",
                                      "--config", self.etc],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        _wait_port(self.port)
        deadline = time.monotonic() + 30
        while self._log_text().count(" accepting on ") < self.processes - 1:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("mailstack workers did not start:\n" + self._log_text()[-2000:])
            time.sleep(0.05)

    def _log_text(self):
        with open(os.path.join(self.directory, "maillog"), encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def cpu(self):
        # The master and its workers (process_min_avail), live or reaped.
        return _tree_cpu(self.proc.pid) if self.processes > 1 else _proc_cpu(self.proc.pid)

    def queued(self):
        incoming = os.path.join(self.etc, "queue", "incoming")
        return len([p for p in os.listdir(incoming) if not p.endswith(".tmp")])

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class PostfixServer:
    """A private Postfix that puts every message on hold after cleanup's fsync."""

    name = "postfix"

    def __init__(self):
        from tests.interop.postfix import PostfixInstance
        self.pf = PostfixInstance(main_cf={
            "smtpd_recipient_restrictions": "check_recipient_access static:HOLD",
            "default_process_limit": "200", "smtpd_client_connection_count_limit": "0",
            "smtpd_client_message_rate_limit": "0"})

    def start(self):
        self.pf.start()
        self.port = self.pf.port
        _wait_port(self.port)

    def cpu(self):
        time.sleep(0.2)  # let the last cleanup/smtpd processes finish their accounting
        return _tree_cpu(self.pf._master_pid)

    def queued(self):
        return sum(len(files) for _, _, files in os.walk(os.path.join(self.pf.queue_directory, "hold")))

    def stop(self):
        self.pf.stop()
        self.pf.cleanup()


def run_round(server, args):
    """One smtp-source run; return (seconds, server CPU, kernel-worker CPU, smtp-source CPU)."""
    before, kbefore = server.cpu(), _kworker_cpu()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = smtp_source(server.port, args.messages, args.sessions, args.size)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    return elapsed, server.cpu() - before, _kworker_cpu() - kbefore, client


def report(name, results, queued, messages):
    def per_msg(seconds):
        return seconds * 1000 / messages
    for elapsed, cpu, kworker, client in results:
        print("%-12s %6d msgs in %6.2f s: %7.1f msg/s, CPU %.2f ms/msg (+ kernel workers %.2f, smtp-source %.2f)"
              % (name, messages, elapsed, messages / elapsed, per_msg(cpu), per_msg(kworker), per_msg(client)))
    rate = statistics.median(messages / r[0] for r in results)
    cpu = statistics.median(per_msg(r[1]) for r in results)
    kworker = statistics.median(per_msg(r[2]) for r in results)
    client = statistics.median(per_msg(r[3]) for r in results)
    print("%-12s median of %d rounds: %7.1f msg/s, %.2f ms CPU/msg, kernel workers %.2f ms/msg, "
          "smtp-source %.2f ms/msg; queued durably: %d" % (name, len(results), rate, cpu, kworker, client, queued))
    return rate, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-postfix", action="store_true")
    parser.add_argument("--processes", default="1",
                        help="mailstack's smtp service in N processes (-o process_min_avail=N); "
                             "a comma-separated list runs one mailstack server per value, in the same rounds")
    args = parser.parse_args()
    print("smtp-source -s %d -m %d -l %d, %d CPUs, load average %s at start" % (
        args.sessions, args.messages, args.size, os.cpu_count(), "%.2f %.2f %.2f" % os.getloadavg()))
    counts = [int(n) for n in args.processes.split(",")]
    servers = [MailstackServer(n) for n in counts] + ([] if args.skip_postfix else [PostfixServer()])
    results = {server.name: [] for server in servers}
    try:
        for server in servers:
            server.start()
        # Rounds alternate between the servers, so that a change in the
        # machine's load during the run hits both alike.
        for _ in range(args.rounds):
            for server in servers:
                results[server.name].append(run_round(server, args))
        medians = {server.name: report(server.name, results[server.name], server.queued(), args.messages)
                   for server in servers}
    finally:
        for server in servers:
            server.stop()
    print("load average %.2f %.2f %.2f at end" % os.getloadavg())
    if "postfix" in medians:
        for name, (rate, _) in medians.items():
            if name != "postfix":
                print("%s/postfix rate ratio (medians): %.2f" % (name, rate / medians["postfix"][0]))


if __name__ == "__main__":
    main()
