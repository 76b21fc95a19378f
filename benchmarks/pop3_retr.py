"""POP3 throughput, mailstack beside Dovecot on the same machine, in the same run.

Builds two maildirs in a temporary directory (through the store's
``maildir.deliver``, so file names carry ``,S=``/``,W=`` as in production):

* ``retr``: 10,000 messages of 2-50 KB (random sizes, fixed seed);
* ``stat``: 100,000 messages of about 1 KB.

Then starts, on loopback:

* mailstack: ``twistd -n mailstack`` on a config written by ``mailstack
  init`` with one ``pop3`` service;
* Dovecot: the Debian ``dovecot`` daemon on a temporary dovecot.conf with a
  passwd-file (pop3 only, no TLS), reading the same maildirs as ``nobody``.

and measures, with one plain-socket client for both:

* RETR throughput: log in, RETR every message of ``retr`` one after the
  other (each reply read to its end before the next command, as fetchmail
  does), messages/s and MB/s, and the CPU time the server's processes
  used per message (from /proc: for Dovecot the master and all its
  children, login, auth and pop3), which load from elsewhere on the machine
  disturbs less than wall-clock time;
* login+STAT on ``stat``: connect, USER/PASS, STAT, QUIT, warm (after a
  first untimed session), seconds.

Each figure is the median of several runs, the two servers' runs
interleaved so that load from elsewhere on the machine hits both alike.  Usage::

    .venv/bin/python benchmarks/pop3_retr.py [--runs N] [--retr-count N] [--stat-count N] [--keep]
"""

import argparse
import io
import os
import pwd
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import free_port, stop, wait_port  # noqa: E402
from mailstack.admin import cli  # noqa: E402
from mailstack.store import maildir  # noqa: E402
from mailstack.store.store import MailStore  # noqa: E402

USER, PASSWORD = "bench@example.test", "bench"
DOVECOT = "/usr/sbin/dovecot"


def build_mailbox(root, count, sizes, seed):
    """Deliver ``count`` messages with sizes drawn from ``sizes`` into the maildir ``root``, then give UIDs."""
    rng = random.Random(seed)
    maildir.ensure(root)
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n"
    for i in range(count):
        size = rng.randint(*sizes)
        head = b"From: sender@example.test\nTo: %s\nSubject: message %d\n\n" % (USER.encode(), i)
        body = (line * (size // len(line) + 1))[:max(0, size - len(head) - 1)] + b"\n"
        if i % 7 == 0:
            body = b"." + body  # some byte-stuffing work
        maildir.deliver(root, head + body, hostname="bench.example.test", fsync=False)
    folder = MailStore(hostname="bench", fsync=False).mailbox("bench", location="maildir:" + root).folder()
    folder.sync()
    return len(folder.messages())


class Client:
    """A minimal blocking POP3 client that reads replies to their end."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.line()

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buffer += data

    def line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        if not line.startswith(b"+OK"):
            raise RuntimeError(line.decode(errors="replace"))
        return line

    def command(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def multiline(self, text):
        """Send a command with a multi-line reply; return the number of body bytes received."""
        self.command(text)
        start = 0
        while True:
            index = self.buffer.find(b"\r\n.\r\n", start)
            if index >= 0:
                size = index + 2
                self.buffer = self.buffer[index + 5:]
                return size
            if self.buffer.startswith(b".\r\n"):
                self.buffer = self.buffer[3:]
                return 0
            start = max(0, len(self.buffer) - 4)
            self._fill()

    def login(self):
        self.command("USER " + USER)
        self.command("PASS " + PASSWORD)

    def quit(self):
        try:
            self.command("QUIT")
        finally:
            self.sock.close()


def cpu_seconds(pid):
    """User+system CPU seconds of process ``pid`` and all its descendants (0 when gone)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as handle:
                for child in handle.read().split():
                    total += cpu_seconds(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def measure_retr(port, count, pid=None):
    """Return (messages/s, MB/s, server CPU microseconds per message)."""
    client = Client(port)
    client.login()
    cpu = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    total = 0
    for number in range(1, count + 1):
        total += client.multiline("RETR %d" % number)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu if pid else 0.0
    client.command("RSET")  # leave the flags as they were for the next run
    client.quit()
    return count / elapsed, total / elapsed / 1e6, cpu / count * 1e6


def measure_login_stat(port, expected):
    started = time.perf_counter()
    client = Client(port)
    client.login()
    stat = client.command("STAT")
    elapsed = time.perf_counter() - started
    client.quit()
    if int(stat.split()[1]) != expected:
        raise RuntimeError("STAT gave %s, expected %d messages" % (stat, expected))
    return elapsed


def start_mailstack(base, port):
    config = os.path.join(base, "etc")
    with redirect_stdout(io.StringIO()):
        status = cli.main(["--config", config, "init", "--ports", "dev", "--domain", "example.test",
                           "--hostname", "localhost"])
    if status:
        raise RuntimeError("mailstack init failed")
    with open(os.path.join(config, "main.cf"), "a") as handle:
        handle.write("mail_location = maildir:%s/mailstack/%%n/Maildir\nmail_fsync = never\n" % base)
    with open(os.path.join(config, "master.cf"), "w") as handle:
        handle.write("pop3 tcp:%d:interface=127.0.0.1\n" % port)
    with open(os.path.join(config, "passwd"), "w") as handle:
        handle.write("%s:{PLAIN}%s::::::\n" % (USER, PASSWORD))
    env = dict(os.environ, PYTHONPATH=ROOT)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    log = open(os.path.join(base, "mailstack.log"), "w")
    proc = subprocess.Popen([twistd, "-n", "--pidfile=", "mailstack", "--config", config],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_port(port, proc, "mailstack")
    return proc


def start_dovecot(base, port):
    conf = os.path.join(base, "dovecot.conf")
    with open(os.path.join(base, "dovecot.passwd"), "w") as handle:
        handle.write("%s:{PLAIN}%s::::::\n" % (USER, PASSWORD))
    with open(conf, "w") as handle:
        handle.write("""\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:{base}/dovecot/%n/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = {base}/dovecot.passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={base}/dovecot/%n
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""".format(base=base, port=port))
    proc = subprocess.Popen([DOVECOT, "-F", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(port, proc, "dovecot")
    return proc


def run_retr(names, ports, pids, runs, count, results):
    # One untimed session each first: warms caches (and lets Dovecot build its index).
    for name in names:
        measure_retr(ports[name], min(count, 100), pids[name])
    figures = {name: [] for name in names}
    for _ in range(runs):
        for name in names:  # interleaved, so that load from elsewhere hits both alike
            figures[name].append(measure_retr(ports[name], count, pids[name]))
    for name in names:
        rates = [rate for rate, _, _ in figures[name]]
        results[name]["retr"] = (statistics.median(rates), statistics.median(mb for _, mb, _ in figures[name]),
                                 statistics.median(cpu for _, _, cpu in figures[name]))
        print("%-9s RETR %d messages: %.0f messages/s, %.1f MB/s, server CPU %.0f us/message "
              "(median of %d; messages/s: %s)"
              % (name, count, results[name]["retr"][0], results[name]["retr"][1], results[name]["retr"][2],
                 runs, ", ".join("%.0f" % r for r in rates)), flush=True)


def run_stat(names, ports, runs, count, results):
    for name in names:
        measure_login_stat(ports[name], count)
    times = {name: [] for name in names}
    for _ in range(runs):
        for name in names:
            times[name].append(measure_login_stat(ports[name], count))
    for name in names:
        results[name]["stat"] = statistics.median(times[name])
        print("%-9s login+STAT on %d messages (warm): %.3f s (median of %d: %s)"
              % (name, count, results[name]["stat"], runs, ", ".join("%.3f" % t for t in times[name])),
              flush=True)


def swap_user(base, which):
    """Point bench's maildir (%n = bench) at the ``which`` copy ("retr" or "stat") of each server."""
    for server in ("mailstack", "dovecot"):
        link = os.path.join(base, server, "bench")
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(os.path.join(base, server, which), link)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--retr-count", type=int, default=10000)
    parser.add_argument("--stat-count", type=int, default=100000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)

    base = tempfile.mkdtemp(prefix="pop3-bench-", dir="/tmp")
    os.chmod(base, 0o755)
    procs = []
    try:
        started = time.perf_counter()
        source = os.path.join(base, "source")
        got = build_mailbox(os.path.join(source, "retr", "Maildir"), args.retr_count, (2000, 50000), 1)
        print("built %d messages of 2-50 KB" % got, flush=True)
        got = build_mailbox(os.path.join(source, "stat", "Maildir"), args.stat_count, (800, 1200), 2)
        print("built %d messages of ~1 KB in %.0f s" % (got, time.perf_counter() - started), flush=True)
        # Each server gets its own copy (hard links: same file contents, own directories),
        # so Dovecot moving new/ to cur/ and writing its index does not change mailstack's.
        for server in ("mailstack", "dovecot"):
            shutil.copytree(source, os.path.join(base, server), copy_function=os.link, symlinks=True)
        shutil.rmtree(source)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for directory, _dirs, files in os.walk(os.path.join(base, "dovecot")):
                os.chown(directory, nobody.pw_uid, nobody.pw_gid)
                for name in files:
                    os.chown(os.path.join(directory, name), nobody.pw_uid, nobody.pw_gid)
        ports = {"mailstack": free_port(), "dovecot": free_port()}
        results = {"mailstack": {}, "dovecot": {}}
        procs.append(start_mailstack(base, ports["mailstack"]))
        have_dovecot = os.access(DOVECOT, os.X_OK)
        if have_dovecot:
            procs.append(start_dovecot(base, ports["dovecot"]))
        names = ["mailstack"] + (["dovecot"] if have_dovecot else [])
        swap_user(base, "retr")
        pids = {"mailstack": procs[0].pid, "dovecot": procs[1].pid if have_dovecot else None}
        run_retr(names, ports, pids, args.runs, args.retr_count, results)
        swap_user(base, "stat")
        run_stat(names, ports, args.runs, args.stat_count, results)
        return results
    finally:
        for proc in procs:
            stop(proc, timeout=20)
        if args.keep:
            print("kept", base)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
