#!/usr/bin/env python3
"""SMTP intake throughput: mailstack's smtpd against Postfix, side by side, driven by smtp-source.

Usage (as root, Postfix installed)::

    .venv/bin/python benchmarks/smtpd_throughput.py [--messages 2000] [--sessions 20] [--size 4096]
        [--rounds 1] [--skip-postfix]

Each server gets the same load from Postfix's ``smtp-source`` (``-s`` parallel
sessions, ``-m`` messages of ``-l`` bytes, one recipient each) and must
queue every message durably before its 250:

- mailstack: ``twistd -n mailstack`` with one ``smtp`` service; the queue
  writer fsyncs each file and its directory in the reactor's thread pool.
  No queue manager runs, so messages stay in ``incoming/``.
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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

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


def _tree_cpu(pid):
    return _proc_cpu(pid, children=True) + sum(_proc_cpu(child) for child in _children(pid))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def run_mailstack(args):
    directory = tempfile.mkdtemp(prefix="mailstack-bench-")
    etc = os.path.join(directory, "etc")
    env = dict(os.environ, PYTHONPATH=ROOT)
    bindir = os.path.dirname(sys.executable)
    subprocess.run([os.path.join(bindir, "mailstack"), "--config", etc, "init", "--ports", "dev",
                    "--domain", "example.test"], check=True, capture_output=True, env=env)
    port = free_port()
    with open(os.path.join(etc, "master.cf"), "w") as handle:
        handle.write("smtp tcp:%d:interface=127.0.0.1\n" % port)
    with open(os.path.join(etc, "main.cf"), "a") as handle:
        handle.write("smtpd_peername_lookup = no\nsmtpd_client_connection_count_limit = 0\n")
    log = open(os.path.join(directory, "maillog"), "w")
    proc = subprocess.Popen([os.path.join(bindir, "twistd"), "-n", "--pidfile=", "mailstack", "--config", etc],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_port(port)
        results = []
        for _ in range(args.rounds):
            before = _proc_cpu(proc.pid)
            elapsed = smtp_source(port, args.messages, args.sessions, args.size)
            cpu = _proc_cpu(proc.pid) - before
            results.append((elapsed, cpu))
        queued = len([p for p in os.listdir(os.path.join(etc, "queue", "incoming")) if not p.endswith(".tmp")])
        return results, queued
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def run_postfix(args):
    from tests.interop.postfix import PostfixInstance
    pf = PostfixInstance(main_cf={"smtpd_recipient_restrictions": "check_recipient_access static:HOLD",
                                  "default_process_limit": "200", "smtpd_client_connection_count_limit": "0",
                                  "smtpd_client_message_rate_limit": "0"})
    try:
        pf.start()
        _wait_port(pf.port)
        pid = pf._master_pid
        results = []
        for _ in range(args.rounds):
            before = _tree_cpu(pid)
            elapsed = smtp_source(pf.port, args.messages, args.sessions, args.size)
            time.sleep(0.2)
            cpu = _tree_cpu(pid) - before
            results.append((elapsed, cpu))
        queued = sum(len(files) for _, _, files in os.walk(os.path.join(pf.queue_directory, "hold")))
        return results, queued
    finally:
        pf.stop()
        pf.cleanup()


def report(name, results, queued, messages):
    for elapsed, cpu in results:
        print("%-9s %6d msgs in %6.2f s: %7.1f msg/s, CPU %.3f s per 1000 messages (%.2f ms/msg)" % (
            name, messages, elapsed, messages / elapsed, cpu * 1000 / messages, cpu * 1000 / messages))
    print("%-9s queued durably: %d" % (name, queued))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-postfix", action="store_true")
    args = parser.parse_args()
    print("smtp-source -s %d -m %d -l %d, %d CPUs" % (args.sessions, args.messages, args.size, os.cpu_count()))
    results, queued = run_mailstack(args)
    report("mailstack", results, queued, args.messages)
    if not args.skip_postfix:
        results, queued = run_postfix(args)
        report("postfix", results, queued, args.messages)


if __name__ == "__main__":
    main()
