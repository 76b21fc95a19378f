"""Time to open a 100,000-message maildir folder: mailstack's store, and Dovecot beside it.

Builds a maildir in a temporary directory (messages named as mailstack
delivers them, 95% in cur/ with flags, 5% in new/), gives it UIDs once,
waits until the directory mtimes have settled (the store trusts an
unchanged mtime only when it is older than two seconds), then prints the
median of several runs of:

* cold: a new MailStore and Folder (no in-memory state: what a new IMAP
  or POP3 process does at SELECT / login), ``sync()`` reading the uidlist
  and both directories;
* warm: ``sync()`` again on an open folder with nothing changed (a new
  session in the same process: the store keeps recent folders in memory);
* warm+1: ``sync()`` after one new delivery (re-reads new/ and the
  uidlist, numbers the message under the lock).

With Dovecot's imap binary installed (Debian dovecot-imapd), it also times
``STATUS INBOX (MESSAGES UIDNEXT)`` by a pre-authenticated Dovecot on the
same maildir: the first run builds Dovecot's index (cold), later ones use it.

Usage: .venv/bin/python benchmarks/store_open.py [COUNT] [RUNS]
"""

import os
import pwd
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from mailstack.store import maildir
from mailstack.store.store import MailStore

IMAP = "/usr/lib/dovecot/imap"


def build(root, count):
    maildir.ensure(root)
    now = int(time.time()) - count
    for i in range(count):
        size = 2000 + i % 5000
        base = "%d.M%dP%dQ%d.bench.example,S=%d,W=%d" % (now + i, i % 1000000, 4242, i, size, size + 40)
        if i % 20:
            path = os.path.join(root, "cur", base + ":2," + ("S" if i % 3 else "FS"))
        else:
            path = os.path.join(root, "new", base)
        with open(path, "wb") as handle:
            handle.write(b"x" * size)


CPU = {}


def timed(function, label=None):
    """Return the wall time of function(); its CPU time goes to CPU[label]."""
    cpu = time.process_time()
    started = time.perf_counter()
    function()
    elapsed = time.perf_counter() - started
    if label:
        CPU.setdefault(label, []).append(time.process_time() - cpu)
    return elapsed


def settle():
    time.sleep(2.1)


def report(label, values, cpu=None):
    line = "%-26s median %.3fs wall  (min %.3fs, max %.3fs, %d runs)" % (
        label, statistics.median(values), min(values), max(values), len(values))
    if cpu:
        line += ", median %.3fs CPU" % statistics.median(cpu)
    print(line)


def dovecot(base, root, runs):
    """Time Dovecot's STATUS on the same maildir; return (cold, [warm...]) or None."""
    if not os.access(IMAP, os.X_OK):
        return None
    user = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    conf = os.path.join(base, "dovecot.conf")
    with open(conf, "w") as handle:
        handle.write("mail_location = maildir:%s\nmail_uid = %d\nmail_gid = %d\nfirst_valid_uid = %d\n"
                     "first_valid_gid = %d\nlog_path = /dev/stderr\nssl = no\nbase_dir = %s/run\n"
                     % (root, user.pw_uid, user.pw_gid, min(user.pw_uid, 1), min(user.pw_gid, 1), base))
    if os.geteuid() == 0:
        for directory, _dirs, files in os.walk(root):
            os.chown(directory, user.pw_uid, user.pw_gid)
            for name in files:
                os.chown(os.path.join(directory, name), user.pw_uid, user.pw_gid)
    env = {"USER": "bench", "HOME": base, "PATH": "/usr/bin:/bin"}
    script = b"a STATUS INBOX (MESSAGES UIDNEXT)\r\nb LOGOUT\r\n"
    times, cpu = [], []
    for _ in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        out = subprocess.run([IMAP, "-c", conf], input=script, capture_output=True, env=env, timeout=300).stdout
        times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        assert b"a OK" in out, out
    return times, cpu


def main(count=100000, runs=5):
    base = tempfile.mkdtemp(prefix="store-bench-", dir="/tmp")
    os.chmod(base, 0o755)
    root = os.path.join(base, "Maildir")
    try:
        started = time.perf_counter()
        build(root, count)
        print("built %d messages in %.1fs" % (count, time.perf_counter() - started))
        first = MailStore(hostname="bench", fsync=False).mailbox("bench", location="maildir:" + root).folder()
        print("first open (numbers %d messages): %.3fs" % (count, timed(first.sync)))
        settle()
        cold, warm, plus_one = [], [], []
        for _ in range(runs):
            mb = MailStore(hostname="bench", fsync=False).mailbox("bench", location="maildir:" + root)
            folder = mb.folder()
            cold.append(timed(folder.sync, "cold"))
            assert len(folder.messages()) == count
            warm.append(timed(folder.sync, "warm"))
            maildir.deliver(root, b"one more\n", fsync=False)
            plus_one.append(timed(folder.sync, "plus"))
            count += 1
            settle()
        report("mailstack cold open+sync", cold, CPU["cold"])
        report("mailstack warm sync", warm, CPU["warm"])
        report("mailstack sync +1 new", plus_one, CPU["plus"])
        result = dovecot(base, root, runs)
        if result is not None:
            times, cpu = result
            print("%-26s %.3fs wall, %.3fs CPU (builds its index)" % ("dovecot STATUS cold", times[0], cpu[0]))
            report("dovecot STATUS (indexed)", times[1:], cpu[1:])
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
