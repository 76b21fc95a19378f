"""IMAP performance, mailstack beside Dovecot on the same machine, in the same run (issue 5).

Builds maildirs in a temporary directory through the store's
``maildir.deliver`` (so file names carry ``,S=``/``,W=`` as in production):
``small`` (10,000 messages) and ``large`` (100,000 messages) of about 1-3 KB,
and ``idle`` (10 messages).  Then, for each server in turn, on loopback:

* mailstack: ``twistd -n mailstack`` on a config written by ``mailstack
  init`` with one ``imap`` service;
* Dovecot: the Debian ``dovecot`` daemon on a temporary dovecot.conf with a
  passwd-file (imap only, no TLS), reading the same maildirs as ``nobody``
  (the store's layout and ``dovecot-uidlist`` are Dovecot's own).

and measures with one plain-socket client for both (each figure the median
of ``--runs`` warm runs, after one untimed session):

* LOGIN+SELECT INBOX (connect to tagged OK of SELECT);
* ``UID FETCH 1:* (FLAGS)``;
* ``FETCH 1:* (ENVELOPE BODYSTRUCTURE)``;
* ``FETCH 1:* BODY.PEEK[]`` as MB/s;
* ``SEARCH SUBJECT "message 4242"``;
* the same structure FETCH and a SUBJECT search in the first (untimed
  warm-up) session, as "cold" figures: nothing cached by either server;

and, for ``--idle`` session counts (default 1,000 and 10,000; Dovecot only
up to ``--dovecot-idle-max``), sessions logged in to the ``idle`` user, INBOX
selected, in IDLE: the server's memory per session (growth of the server
processes' proportional set size, PSS, divided by the number of sessions) and
the latency from a delivery (a separate process writing through
``maildir.deliver``, timestamped after its rename) to each session's
``EXISTS`` (p50/p99 over sessions, median over ``--idle-rounds``
deliveries).

Results are printed and, with ``--report``, appended to docs/performance.md
under an "IMAP" heading.  Usage::

    .venv/bin/python benchmarks/imap_bench.py [--runs 3] [--small 10000] [--large 100000]
        [--idle 1000,10000] [--dovecot-idle-max 1000] [--report]
"""

import argparse
import io
import os
import platform
import pwd
import random
import resource
import selectors
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

PASSWORD = "bench"
USERS = ("small", "large", "idle")
DOVECOT = "/usr/sbin/dovecot"
LOAD_AT_START = 0.0
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


def build_mailbox(root, count, seed):
    """Deliver ``count`` messages (1-3 KB, every fifth multipart) into maildir ``root``; return the count."""
    rng = random.Random(seed)
    maildir.ensure(root)
    for i in range(count):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(150, 450)))
        head = ("From: Sender %d <sender%d@example.test>\nTo: user@example.test\nSubject: message %d\n"
                "Date: Mon, 01 Mar 2021 09:%02d:00 +0000\nMessage-ID: <%d@bench.example.test>\n"
                % (i % 50, i % 50, i, i % 60, i))
        if i % 5 == 0:
            body = ("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n--b%d\n"
                    "Content-Type: text/plain; charset=utf-8\n\n%s\n--b%d\nContent-Type: application/pdf\n"
                    "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--b%d--\n" % (i, i, words, i, i))
        else:
            body = "\n" + words + "\n"
        maildir.deliver(root, (head + body).encode(), hostname="bench.example.test", fsync=False)
    folder = MailStore(hostname="bench", fsync=False).mailbox("bench", location="maildir:" + root).folder()
    folder.sync()
    return len(folder.messages())


def chown_tree(top, user):
    entry = pwd.getpwnam(user)
    for directory, _dirs, files in os.walk(top):
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), entry.pw_uid, entry.pw_gid)


# -- one blocking client for single-session figures -------------------------------------

class Client:
    """A minimal blocking IMAP client that reads each response to its tagged end."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.counter = 0
        while b"\r\n" not in self.buffer:
            self._fill()
        del self.buffer[:self.buffer.index(b"\r\n") + 2]

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buffer += data

    def command(self, text):
        """Send a command; return (bytes received, tagged line)."""
        self.counter += 1
        tag = b"b%d" % self.counter
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        marker = b"\r\n" + tag + b" "
        start = 0
        while True:
            index = self.buffer.find(marker, start) if self.buffer[:len(tag) + 1] != tag + b" " else -1
            if self.buffer[:len(tag) + 1] == tag + b" ":
                index = -2
            end = self.buffer.find(b"\r\n", index + 2 + len(marker) - 2) if index != -1 else -1
            if index != -1 and end != -1:
                line_start = 0 if index == -2 else index + 2
                line = bytes(self.buffer[line_start:end])
                size = line_start
                del self.buffer[:end + 2]
                if not line.split(b" ")[1] == b"OK":
                    raise RuntimeError(line.decode(errors="replace"))
                return size, line
            start = max(0, len(self.buffer) - len(marker) - 64)
            self._fill()

    def close(self):
        try:
            self.command("LOGOUT")
        except (OSError, RuntimeError, ConnectionError):
            pass
        self.sock.close()


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def login_select(port, user):
    client = Client(port)
    client.command("LOGIN %s %s" % (user, PASSWORD))
    client.command("SELECT INBOX")
    return client


def series(port, user, runs, count):
    """Return {figure: median} for one mailbox."""
    figures = {}
    # The first session is the warm-up (it lets Dovecot build its index);
    # its structure fetch and search are the cold figures (no cache yet).
    client = login_select(port, user)
    figures["envelope_cold"] = timed(client.command, "FETCH 1:* (ENVELOPE BODYSTRUCTURE)")[0]
    figures["search_cold"] = timed(client.command, 'SEARCH SUBJECT "message %d"' % (count // 3))[0]
    client.close()
    samples = {"select": [], "flags": [], "envelope": [], "bodies": [], "search": []}
    for _ in range(runs):
        elapsed, client = timed(login_select, port, user)
        samples["select"].append(elapsed)
        samples["flags"].append(timed(client.command, "UID FETCH 1:* (FLAGS)")[0])
        samples["envelope"].append(timed(client.command, "FETCH 1:* (ENVELOPE BODYSTRUCTURE)")[0])
        elapsed, (size, _line) = timed(client.command, "FETCH 1:* BODY.PEEK[]")
        samples["bodies"].append(size / elapsed / 1e6)
        samples["search"].append(timed(client.command, 'SEARCH SUBJECT "message %d"' % (count // 2))[0])
        client.close()
    for name, values in samples.items():
        figures[name] = statistics.median(values)
    return figures


# -- many sessions in IDLE ------------------------------------------------------------

def _idle_run(port, sessions, rounds, server_pids, deliver):
    """Open ``sessions`` IDLE sessions; return (KiB per session, p50, p99 push latency).

    A bare ``selectors`` loop on non-blocking sockets, so that the client's
    own cost per session stays small next to the server's (they share the
    machine's CPUs).
    """
    login = b"a LOGIN idle %s\r\nb SELECT INBOX\r\nc IDLE\r\n" % PASSWORD.encode()
    selector = selectors.DefaultSelector()
    before = pss_kib(server_pids())
    pending = {}          # socket -> (bytes received during setup, LOGIN sent)
    idle = []
    started = {}
    opened = 0
    deadline = time.monotonic() + 900
    while len(idle) < sessions:
        while opened < sessions and len(pending) < 100:
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            selector.register(sock, selectors.EVENT_READ)
            pending[sock] = (b"", False)
            started[sock] = time.monotonic()
            opened += 1
        for key, _ in selector.select(timeout=1):
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                raise ConnectionError("server closed a session during setup")
            buffer, sent = pending[sock]
            buffer += data
            if not sent and b"\r\n" in buffer:
                sock.sendall(login)  # the greeting arrived: pipeline LOGIN, SELECT, IDLE
                sent = True
            if b"\r\na NO" in buffer or b"\r\nb NO" in buffer or b" BAD " in buffer:
                raise RuntimeError(buffer[-300:])
            if b"\r\n+ " in buffer:
                del pending[sock]
                idle.append(sock)
                continue
            pending[sock] = (buffer, sent)
        now = time.monotonic()
        for sock in [s for s in pending if not pending[s][1] and now - started[s] > 10]:
            # Dropped from a full accept queue: no greeting ever comes; reconnect.
            selector.unregister(sock)
            sock.close()
            del pending[sock]
            opened -= 1
        if time.monotonic() > deadline:
            raise RuntimeError("only %d of %d sessions reached IDLE" % (len(idle), sessions))
    time.sleep(2)
    for sock in idle:
        try:
            while sock.recv(65536):
                pass
        except BlockingIOError:
            pass
    after = pss_kib(server_pids())
    per_session = (after - before) / sessions
    p50s, p99s = [], []
    for _ in range(rounds):
        stamp = deliver()
        arrivals = []
        seen = set()
        limit = time.monotonic() + 60
        while len(seen) < sessions and time.monotonic() < limit:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                if b"EXISTS" in data and sock not in seen:
                    seen.add(sock)
                    arrivals.append(time.time())
        latencies = sorted(max(0.0, t - stamp) for t in arrivals)
        if latencies:
            print("  push round: first EXISTS after %.3f s, last after %.3f s" % (latencies[0], latencies[-1]),
                  flush=True)
        latencies += [float("inf")] * (sessions - len(latencies))
        p50s.append(latencies[len(latencies) // 2])
        p99s.append(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))])
        time.sleep(0.5)
    for sock in idle:
        selector.unregister(sock)
        sock.close()
    selector.close()
    return per_session, statistics.median(p50s), statistics.median(p99s)


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/smaps_rollup" % pid) as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def children(pid):
    result = [pid]
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    except OSError:
        return result
    for line in out.split():
        result.extend(children(int(line)))
    return result


def deliver_as(maildir_path, owner):
    """Deliver one message from a child process; return the time just after its rename.

    The file is then given to ``owner`` (Dovecot runs as ``nobody``); the
    timestamp is taken before that, so the chown counts against the server.
    """
    entry = pwd.getpwnam(owner) if owner else None
    ids = (entry.pw_uid, entry.pw_gid) if entry else None
    code = ("import os,sys,time; sys.path.insert(0, %r); from mailstack.store import maildir; "
            "d = maildir.deliver(%r, b'Subject: push\\n\\nhello\\n', hostname='bench', fsync=False); "
            "stamp = time.time(); ids = %r; "
            "ids and os.chown(os.path.join(%r, 'new', d.name), *ids); print(repr(stamp))"
            % (ROOT, maildir_path, ids, maildir_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip())


# -- servers ----------------------------------------------------------------------------

def start_mailstack(base, port):
    config = os.path.join(base, "etc")
    if not os.path.exists(os.path.join(config, "main.cf")):
        with redirect_stdout(io.StringIO()):
            status = cli.main(["--config", config, "init", "--ports", "dev", "--domain", "example.test",
                               "--hostname", "localhost"])
        if status:
            raise RuntimeError("mailstack init failed")
        with open(os.path.join(config, "main.cf"), "a") as handle:
            handle.write("mail_location = maildir:%s/%%n/Maildir\nmail_fsync = never\n" % base)
    with open(os.path.join(config, "master.cf"), "w") as handle:
        # A deep accept queue: thousands of clients connect at once.
        handle.write("imap tcp:%d:interface=127.0.0.1:backlog=4096\n" % port)
    with open(os.path.join(config, "passwd"), "w") as handle:
        for user in USERS:
            handle.write("%s:{PLAIN}%s::::::\n" % (user, PASSWORD))
    env = dict(os.environ, PYTHONPATH=ROOT)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    log = open(os.path.join(base, "mailstack.log"), "w")
    proc = subprocess.Popen([twistd, "-n", "--pidfile=", "mailstack", "--config", config],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_port(port, proc, "mailstack")
    return proc


def start_dovecot(base, port, max_sessions):
    conf = os.path.join(base, "dovecot.conf")
    with open(os.path.join(base, "dovecot.passwd"), "w") as handle:
        for user in USERS:
            handle.write("%s:{PLAIN}%s::::::\n" % (user, PASSWORD))
    limit = max_sessions + 100
    with open(conf, "w") as handle:
        handle.write("""\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:{base}/%n/Maildir
first_valid_uid = 1
mail_max_userip_connections = {limit}
default_process_limit = {limit}
default_client_limit = {limit}
default_vsz_limit = 0
passdb {{
  driver = passwd-file
  args = {base}/dovecot.passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={base}/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 2
}}
service imap {{
  process_limit = {limit}
}}
service anvil {{
  chroot =
}}
""".format(base=base, port=port, limit=limit))
    proc = subprocess.Popen([DOVECOT, "-F", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(port, proc, "dovecot")
    return proc


def run_server(name, start, args, counts, idle_sizes, deliver_owner, base, procs):
    """Run every figure against server ``name``; ``start()`` returns a fresh (process, port).

    Each IDLE size gets a freshly started server, so that memory freed by an
    earlier figure (a 100,000-message FETCH) cannot hide what sessions cost.
    """
    results = {}

    def fresh():
        proc, port = start()
        procs.append(proc)
        return proc, port

    def done(proc):
        stop(proc)
        procs.remove(proc)

    proc, port = fresh()
    for user in ("small", "large"):
        if counts[user]:
            results[user] = series(port, user, args.runs, counts[user])
            print("%-9s %-6s %s" % (name, user, fmt(results[user])), flush=True)
    done(proc)
    inbox = os.path.join(base, "idle", "Maildir")
    for sessions in idle_sizes:
        proc, port = fresh()
        try:
            login_select(port, "idle").close()  # warm: the first login loads the auth and store code
            figures = _idle_run(port, sessions, args.idle_rounds, lambda: children(proc.pid),
                                lambda: deliver_as(inbox, deliver_owner))
        except Exception as err:  # report what failed (limits, memory) and go on
            print("%-9s IDLE %d sessions failed: %s" % (name, sessions, err), flush=True)
            results["idle%d" % sessions] = None
            continue
        finally:
            done(proc)
        results["idle%d" % sessions] = figures
        print("%-9s IDLE %6d sessions: %.1f KiB/session, push p50 %.3f s, p99 %.3f s"
              % ((name, sessions) + figures), flush=True)
    return results


def fmt(figures):
    return ("LOGIN+SELECT %.3f s, UID FETCH FLAGS %.3f s, ENVELOPE+BODYSTRUCTURE %.3f s, "
            "bodies %.1f MB/s, SEARCH SUBJECT %.3f s; cold ENVELOPE+BODYSTRUCTURE %.3f s, cold SEARCH %.3f s"
            % (figures["select"], figures["flags"], figures["envelope"], figures["bodies"], figures["search"],
               figures["envelope_cold"], figures["search_cold"]))


def report(results, counts, args):
    lines = ["", "## IMAP", "",
             "`benchmarks/imap_bench.py`, %s, on %s (%s, %d CPUs, Python %s; load average %.1f when "
             "it started, the machine being shared); median of %d warm runs; client and servers on the same "
             "machine; messages of 1-3 KB, every fifth multipart; Dovecot %s with its default settings "
             "(a process per session, no hibernation)." % (
                 time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), platform.node(), platform.processor()
                 or platform.machine(), os.cpu_count(), platform.python_version(), LOAD_AT_START, args.runs,
                 dovecot_version()),
             "",
             "| INBOX | figure | mailstack | Dovecot |", "|---|---|---|---|"]
    labels = (("select", "LOGIN+SELECT (s)"), ("flags", "UID FETCH 1:* (FLAGS) (s)"),
              ("envelope", "FETCH 1:* (ENVELOPE BODYSTRUCTURE) (s)"), ("bodies", "all bodies (MB/s)"),
              ("search", "SEARCH SUBJECT (s)"),
              ("envelope_cold", "cold FETCH 1:* (ENVELOPE BODYSTRUCTURE), first session (s)"),
              ("search_cold", "cold SEARCH SUBJECT, first session (s)"))
    for user in ("small", "large"):
        if not counts[user]:
            continue
        for key, label in labels:
            row = ["%d" % counts[user], label]
            for name in ("mailstack", "dovecot"):
                value = results.get(name, {}).get(user)
                row.append("%.3f" % value[key] if value else "n/a")
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| sessions in IDLE | figure | mailstack | Dovecot |", "|---|---|---|---|"]
    for sessions in args.idle:
        for index, label in ((0, "memory per session (KiB, PSS)"), (1, "delivery to EXISTS p50 (s)"),
                             (2, "delivery to EXISTS p99 (s)")):
            row = ["%d" % sessions, label]
            for name in ("mailstack", "dovecot"):
                value = results.get(name, {}).get("idle%d" % sessions)
                row.append(("%.1f" % value[index] if index == 0 else "%.3f" % value[index]) if value else
                           "not run")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def dovecot_version():
    try:
        return subprocess.run([DOVECOT, "--version"], capture_output=True, text=True).stdout.split()[0]
    except (OSError, IndexError):
        return "?"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small", type=int, default=10000)
    parser.add_argument("--large", type=int, default=100000)
    parser.add_argument("--idle", default="1000,10000")
    parser.add_argument("--idle-rounds", type=int, default=3)
    parser.add_argument("--dovecot-idle-max", type=int, default=1000)
    parser.add_argument("--report", action="store_true", help="append the results to docs/performance.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.idle = [int(n) for n in args.idle.split(",") if n]
    global LOAD_AT_START
    LOAD_AT_START = os.getloadavg()[0]
    wanted = max(args.idle + [1000]) * 2 + 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        # Client and server are separate processes: each needs one descriptor per session.
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard) if hard != resource.RLIM_INFINITY
                                                    else wanted, hard))
    base = tempfile.mkdtemp(prefix="imap-bench-", dir="/tmp")
    os.chmod(base, 0o755)
    counts = {"small": args.small, "large": args.large}
    procs = []
    results = {}
    try:
        started = time.perf_counter()
        for seed, user in enumerate(USERS):
            count = counts.get(user, 10)
            if count:
                build_mailbox(os.path.join(base, user, "Maildir"), count, seed)
        print("built mailboxes in %.0f s" % (time.perf_counter() - started), flush=True)

        def mailstack():
            port = free_port()
            return start_mailstack(base, port), port

        results["mailstack"] = run_server("mailstack", mailstack, args, counts, args.idle, None, base, procs)

        if os.access(DOVECOT, os.X_OK):
            if os.geteuid() == 0:
                for user in USERS:
                    chown_tree(os.path.join(base, user), "nobody")
            owner = "nobody" if os.geteuid() == 0 else None

            def dovecot():
                port = free_port()
                return start_dovecot(base, port, max(args.idle + [10])), port

            results["dovecot"] = run_server("dovecot", dovecot, args, counts,
                                            [n for n in args.idle if n <= args.dovecot_idle_max], owner, base,
                                            procs)
        text = report(results, counts, args)
        print(text)
        if args.report:
            path = os.path.join(ROOT, "docs", "performance.md")
            if not os.path.exists(path):
                with open(path, "w") as handle:
                    handle.write("# Performance\n")
            with open(path, "a") as handle:
                handle.write(text)
        return results
    finally:
        for proc in procs:
            stop(proc)
        if args.keep:
            print("kept", base)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
