"""Time to open a 100,000-message maildir folder with mailstack's store.

Builds a maildir in a temporary directory (messages named as mailstack
delivers them, half in new/ and half in cur/ with flags), gives it UIDs
once, then prints the median of several runs of:

* cold: a new MailStore and Folder (no in-memory state: what a new IMAP
  or POP3 process does at SELECT / login), ``sync()`` reading the uidlist
  and both directories;
* warm: ``sync()`` again on an open folder with nothing changed;
* warm+1: ``sync()`` after one new delivery (UID assignment under the lock).

Usage: .venv/bin/python benchmarks/store_open.py [COUNT] [RUNS]
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

from mailstack.store import maildir
from mailstack.store.store import MailStore


def build(root, count):
    maildir.ensure(root)
    now = int(time.time()) - count
    for i in range(count):
        size = 2000 + i % 5000
        base = "%d.M%dP%dQ%d.bench.example,S=%d,W=%d" % (now + i, i % 1000000, 4242, i, size, size + 40)
        if i % 2:
            path = os.path.join(root, "cur", base + ":2," + ("S" if i % 3 else "FS"))
        else:
            path = os.path.join(root, "new", base)
        with open(path, "wb") as handle:
            handle.write(b"x" * size)


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main(count=100000, runs=5):
    base = tempfile.mkdtemp(prefix="store-bench-")
    root = os.path.join(base, "Maildir")
    try:
        started = time.perf_counter()
        build(root, count)
        print("built %d messages in %.1fs" % (count, time.perf_counter() - started))
        first = MailStore(hostname="bench", fsync=False).mailbox("bench", location="maildir:" + root).folder()
        print("first open (assigns %d UIDs): %.3fs" % (count, timed(first.sync)))
        cold, warm, plus_one = [], [], []
        for _ in range(runs):
            mb = MailStore(hostname="bench", fsync=False).mailbox("bench", location="maildir:" + root)
            folder = mb.folder()
            cold.append(timed(folder.sync))
            assert len(folder.messages()) == count
            warm.append(timed(folder.sync))
            maildir.deliver(root, b"one more\n", fsync=False)
            plus_one.append(timed(folder.sync))
            count += 1
        for label, values in (("cold open+sync", cold), ("warm sync", warm), ("warm sync +1 new", plus_one)):
            print("%-18s median %.3fs  (min %.3fs, max %.3fs, %d runs)" % (
                label, statistics.median(values), min(values), max(values), len(values)))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
