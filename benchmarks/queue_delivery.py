"""Local delivery throughput, SMTP accept -> file in a maildir: mailstack beside Postfix, same machine, same run.

Both servers run on loopback from temporary directories:

* mailstack: ``twistd -n mailstack`` on a config written by ``mailstack
  init`` with two services, ``smtp`` and ``qmgr``; the recipient is a
  passwd-file user of ``virtual_mailbox_domains`` (virtual delivery
  through the store);
* Postfix: the Debian Postfix through ``tests/interop/postfix.py``
  (its own config, queue and log), delivering the recipient itself with
  virtual(8) into a maildir.

The same client sends ``--messages`` messages of about ``--size`` bytes
over ``--clients`` parallel SMTP connections (smtplib, one transaction per
message), then waits until every message is a file in the maildir.
Reported, per server (median of ``--runs`` runs):

* end-to-end rate: messages / (first MAIL FROM -> last file in the maildir);
* SMTP accept rate: messages / time to get every 250 after DATA;
* latency: the servers' own ``delay=`` (queue arrival -> delivered) from
  their maillog, median and 95th percentile;
* CPU per message: user + system time of each mailstack process during the
  run (``/proc/PID/stat`` utime + stime) divided by the messages, in ms, and
  the two apart; with ``--split`` the smtp and qmgr processes are given apart,
  and with ``--processes N`` (``-o process_min_avail=N`` on the smtp
  service) each of its N-1 worker processes too.

Usage::

    .venv/bin/python benchmarks/queue_delivery.py [--messages N] [--clients N] [--size BYTES] [--runs N]
        [--split] [--processes N] [--no-postfix]

Needs root (Postfix must start) and the Debian postfix package.
"""

import argparse
import os
import re
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import free_port  # noqa: E402

from tests.interop.postfix import PostfixInstance  # noqa: E402

BIN = os.path.dirname(sys.executable)
RECIPIENT = "joe@example.test"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    # The servers log to standard output (twistd -n), which the benchmark
    # sends to a file: unbuffered, every log line would be a write(2) of its
    # own on the reactor thread (a daemon's maillog_file is always buffered).
    env.pop("PYTHONUNBUFFERED", None)
    return env


def _count(folder):
    try:
        return len(os.listdir(folder))
    except FileNotFoundError:
        return 0


def _send(port, count, clients, size):
    """Send ``count`` messages over ``clients`` connections; return (seconds to accept all, errors)."""
    body = b"Subject: benchmark\r\n\r\n" + (b"x" * 72 + b"\r\n") * max(1, size // 74)
    errors = []

    def worker(n):
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                client.ehlo("bench.example.org")
                for _ in range(n):
                    client.sendmail("sender@example.org", [RECIPIENT], body)
        except Exception as err:  # reported, and the run is invalid
            errors.append(err)

    shares = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
    threads = [threading.Thread(target=worker, args=(n,)) for n in shares]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - start, errors


def cpu_seconds(pid):
    """Return the (user, system) CPU seconds a process has used (``/proc/PID/stat`` utime, stime)."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _measure(port, folder, log_reader, count, clients, size, pids=()):
    before = _count(folder)
    cpu_before = [cpu_seconds(pid) for pid in pids]
    start = time.monotonic()
    accept, errors = _send(port, count, clients, size)
    if errors:
        raise RuntimeError("SMTP errors: %r" % errors[:3])
    deadline = time.monotonic() + 300
    while _count(folder) < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError("only %d of %d delivered" % (_count(folder) - before, count))
        time.sleep(0.01)
    total = time.monotonic() - start
    cpu = [tuple((now - then) * 1000.0 / count for now, then in zip(cpu_seconds(pid), used))
           for pid, used in zip(pids, cpu_before)]
    delays = [float(d) for d in re.findall(r"to=<%s>.*? delay=([\d.]+),.*status=sent" % re.escape(RECIPIENT),
                                           log_reader())]
    return {"rate": count / total, "accept": count / accept, "delays": delays[-count:], "cpu": cpu}


class Mailstack:
    """A mailstack server with smtp and qmgr services in a temporary directory.

    With ``split``, two processes share the queue: one runs ``smtp``, the
    other ``qmgr`` (its own configuration directory with the same main.cf),
    which finds new mail by scanning incoming/ every ``qmgr_scan_interval``.
    """

    def __init__(self, directory, split=False, processes=1):
        self.directory = directory
        self.processes = processes
        self.config = os.path.join(directory, "etc")
        self.port = free_port()
        self.log_path = os.path.join(directory, "maillog")
        self.split = split
        self.procs = []

    def start(self):
        mailstack = os.path.join(BIN, "mailstack")
        subprocess.run([mailstack, "--config", self.config, "init", "--ports", "dev", "--domain", "example.test",
                        "--hostname", "mail.example.test"], check=True, stdout=subprocess.DEVNULL, env=_env())
        with open(os.path.join(self.config, "passwd"), "a") as handle:
            handle.write("%s:{PLAIN}secret::::::\n" % RECIPIENT)
        subprocess.run([mailstack, "--config", self.config, "newaliases"], check=True, env=_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([mailstack, "--config", self.config, "postmap", os.path.join(self.config, "virtual")],
                       check=True, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(self.config, "main.cf"), "a") as handle:
            handle.write("smtpd_tls_security_level = none\nqmgr_scan_interval = 0.05s\n")
        configs = [self.config]
        if self.split:
            with open(os.path.join(self.config, "master.cf"), "w") as handle:
                handle.write(self._smtp_line())
            second = os.path.join(self.directory, "etc-qmgr")
            shutil.copytree(self.config, second)
            with open(os.path.join(second, "main.cf"), "a") as handle:
                handle.write("config_directory = %s\n" % self.config)
            with open(os.path.join(second, "master.cf"), "w") as handle:
                handle.write("qmgr -\n")
            configs.append(second)
        else:
            with open(os.path.join(self.config, "master.cf"), "w") as handle:
                handle.write(self._smtp_line() + "qmgr -\n")
        log = open(self.log_path, "ab")
        for config in configs:
            self.procs.append(subprocess.Popen([os.path.join(BIN, "twistd"), "-n", "--pidfile=", "mailstack",
                                                "--config", config], stdout=log, stderr=subprocess.STDOUT,
                                               env=_env()))
        log.close()
        deadline = time.monotonic() + 30
        while (self.log().count("daemon started") < len(configs)
               or self.log().count(" accepting on ") < self.processes - 1):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError("mailstack did not start:\n" + self.log()[-2000:])
            time.sleep(0.05)

    def _smtp_line(self):
        return "smtp tcp:%d:interface=127.0.0.1 -o process_min_avail=%d\n" % (self.port, self.processes)

    def pids(self):
        """The twistd processes, then the smtp service's worker processes (process_min_avail)."""
        workers = [int(pid) for pid in re.findall(r"service smtp: process (\d+) started", self.log())]
        return [p.pid for p in self.procs] + workers[len(workers) - (self.processes - 1):]

    def folder(self):
        return os.path.join(self.config, "mail", "example.test", "joe", "Maildir", "new")

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)
        self.procs = []


def _summary(name, results):
    rate = statistics.median(r["rate"] for r in results)
    accept = statistics.median(r["accept"] for r in results)
    delays = sorted(d for r in results for d in r["delays"])
    p50 = statistics.median(delays) if delays else float("nan")
    p95 = delays[int(len(delays) * 0.95) - 1] if delays else float("nan")
    print("%-10s %10.0f msg/s %10.0f msg/s %10.3f s %10.3f s" % (name, rate, accept, p50, p95))
    return rate


def _cpu_summary(results, names):
    """Print the median CPU ms per message of each mailstack process: user+system (user/system)."""

    def figure(values):
        return "%.2f (%.2f/%.2f)" % (statistics.median(u + s for u, s in values),
                                     statistics.median(u for u, _ in values), statistics.median(s for _, s in values))
    parts = ["%s %s" % (name, figure([r["cpu"][i] for r in results])) for i, name in enumerate(names)]
    if len(names) > 1:
        parts.append("total %s" % figure([(sum(u for u, _ in r["cpu"]), sum(s for _, s in r["cpu"])) for r in results]))
    print("mailstack CPU ms/message, user+system (user/system), median: " + ", ".join(parts))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--split", action="store_true", help="run mailstack's smtp and qmgr as two processes")
    parser.add_argument("--processes", type=int, default=1,
                        help="mailstack's smtp service in N processes (-o process_min_avail=N)")
    parser.add_argument("--no-postfix", action="store_true", help="measure mailstack only (quick profiling rounds)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    base = tempfile.mkdtemp(prefix="mailstack-bench-")
    os.chmod(base, 0o755)
    results = {"mailstack": [], "postfix": []}
    ms = Mailstack(os.path.join(base, "mailstack"), args.split, args.processes)
    pf = PostfixInstance(directory=os.path.join(base, "postfix"), mailboxes=[RECIPIENT])
    try:
        ms.start()
        if not args.no_postfix:
            pf.start()
        _measure(ms.port, ms.folder(), ms.log, 50, args.clients, args.size)  # warm up
        pf_folder = os.path.join(pf.mail_directory, "example.test", "joe", "new")
        if not args.no_postfix:
            _measure(pf.port, pf_folder, pf.log, 50, args.clients, args.size)
        for _ in range(args.runs):
            results["mailstack"].append(_measure(ms.port, ms.folder(), ms.log, args.messages, args.clients,
                                                 args.size, ms.pids()))
            if not args.no_postfix:
                results["postfix"].append(_measure(pf.port, pf_folder, pf.log, args.messages, args.clients,
                                                   args.size))
    finally:
        ms.stop()
        if not args.no_postfix:
            pf.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("%d messages of ~%d bytes, %d SMTP clients, median of %d runs%s"
          % (args.messages, args.size, args.clients, args.runs,
             (", mailstack as two processes" if args.split else "")
             + (", smtp in %d processes" % args.processes if args.processes > 1 else "")))
    print("load average (1 min) before %.2f, after %.2f" % (load_before[0], os.getloadavg()[0]))
    print("%-10s %16s %16s %12s %12s" % ("server", "end-to-end", "SMTP accept", "delay p50", "delay p95"))
    ours = _summary("mailstack", results["mailstack"])
    theirs = _summary("postfix", results["postfix"]) if not args.no_postfix else None
    names = (["smtp", "qmgr"] if args.split else ["smtp+qmgr"]) + [
        "smtp worker %d" % n for n in range(1, args.processes)]
    _cpu_summary(results["mailstack"], names)
    if theirs:
        print("mailstack / postfix end-to-end: %.2fx" % (ours / theirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
