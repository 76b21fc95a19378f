"""dovecot-uidlist v3 reading and writing, and the Dovecot dot-lock."""

import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from mailstack.store import dotlock, uidlist

DOVECOT_LIST = (b"3 V1795424284 N1 Gd0df820e1c00046bed3c000083ecc375\n"
                b"1 :1795424284.M246834P15597.vm,S=11,W=12\n"
                b"2 W2048 P0002 :1795424284.M249286P15597.vm,S=11:2,S\n")


def _write(path, data):
    with open(os.path.join(path, uidlist.FILENAME), "wb") as handle:
        handle.write(data)


def test_reads_dovecot_format(tmp_path):
    """A list written by Dovecot 2.3 gives UIDVALIDITY, records and next UID = last + 1."""
    _write(tmp_path, DOVECOT_LIST)
    ul = uidlist.UidList(str(tmp_path))
    assert ul.refresh() == "full"
    assert ul.uidvalidity == 1795424284 and ul.next_uid == 3
    assert ul.guid == "d0df820e1c00046bed3c000083ecc375"
    assert ul.by_uid[2] == "1795424284.M249286P15597.vm,S=11" and ul.ext[2] == "W2048 P0002"
    assert ul.refresh() is None


def test_append_and_rewrite_keep_extensions(tmp_path):
    """Assigning appends lines; dropping rewrites with N, G and ext fields kept."""
    _write(tmp_path, DOVECOT_LIST)
    ul = uidlist.UidList(str(tmp_path), fsync=False)
    lock = ul.lock()
    new = ul.assign(lock, ["100.M1P1.h", "1795424284.M246834P15597.vm,S=11,W=12"], lambda: 0)
    lock.release()
    assert new == [(3, "100.M1P1.h")]
    text = pathlib.Path(os.path.join(tmp_path, uidlist.FILENAME)).read_text()
    assert text == DOVECOT_LIST.decode() + "3 :100.M1P1.h\n"
    lock = ul.lock()
    ul.drop(lock, [1, 3])
    assert not lock.held and not os.path.exists(os.path.join(tmp_path, uidlist.FILENAME + ".lock"))
    text = pathlib.Path(os.path.join(tmp_path, uidlist.FILENAME)).read_text()
    assert text == ("3 V1795424284 N4 Gd0df820e1c00046bed3c000083ecc375\n"
                    "2 W2048 P0002 :1795424284.M249286P15597.vm,S=11\n")


def test_incremental_read_ignores_partial_line(tmp_path):
    """A reader sees appended records and ignores a last line still being written."""
    _write(tmp_path, DOVECOT_LIST)
    ul = uidlist.UidList(str(tmp_path))
    ul.refresh()
    with open(os.path.join(tmp_path, uidlist.FILENAME), "ab") as handle:
        handle.write(b"3 :a.b.c\n4 :d.e")
    assert ul.refresh() == "append" and ul.appended == [3]
    assert sorted(ul.by_uid) == [1, 2, 3] and ul.next_uid == 4
    with open(os.path.join(tmp_path, uidlist.FILENAME), "ab") as handle:
        handle.write(b".f\n")
    ul.refresh()
    assert ul.by_uid[4] == "d.e.f" and ul.next_uid == 5


def test_new_list_created_with_uidvalidity(tmp_path):
    """The first assignment creates the file with the factory's UIDVALIDITY and a GUID."""
    ul = uidlist.UidList(str(tmp_path), fsync=False)
    lock = ul.lock()
    ul.assign(lock, ["1.a.h", "2.b.h"], lambda: 4242)
    lines = pathlib.Path(os.path.join(tmp_path, uidlist.FILENAME)).read_text().splitlines()
    assert lines[0].startswith("3 V4242 N3 G") and len(lines[0].split()[3]) == 33
    assert lines[1:] == ["1 :1.a.h", "2 :2.b.h"]


def test_version1_is_read(tmp_path):
    """Old version 1 lists (uid filename) are understood."""
    _write(tmp_path, b"1 12345 7\n5 100.x.h:2,S\n6 101.y.h\n")
    ul = uidlist.UidList(str(tmp_path))
    ul.refresh()
    assert ul.uidvalidity == 12345 and ul.next_uid == 7 and ul.by_uid[5] == "100.x.h"


def test_dotlock_excludes_and_times_out(tmp_path):
    """A held dot-lock makes another acquire wait and time out."""
    path = str(tmp_path / "file")
    held = dotlock.acquire(path)
    with pytest.raises(dotlock.LockTimeout):
        dotlock.acquire(path, timeout=0.05)
    held.release()
    dotlock.acquire(path, timeout=0.05).release()


def test_stale_dotlock_is_broken(tmp_path):
    """A lock file left by a dead process is removed once older than the stale timeout."""
    path = str(tmp_path / "file")
    open(path + ".lock", "w").close()
    old = time.time() - 600
    os.utime(path + ".lock", (old, old))
    lock = dotlock.acquire(path, timeout=2, stale_timeout=120)
    assert lock.held
    lock.replace(b"new")
    assert pathlib.Path(path).read_bytes() == b"new" and not os.path.exists(path + ".lock")


def test_extension_values_with_colons(tmp_path):
    """An extension value holding ':' (a migrated POP3 UIDL) does not confuse the record parser."""
    _write(tmp_path, b"3 V1 N1 Gx\n1 P0:1 :100.a.h\n2 :101.b.h:2,S\n")
    ul = uidlist.UidList(str(tmp_path))
    ul.refresh()
    assert ul.by_uid == {1: "100.a.h", 2: "101.b.h"} and ul.ext == {1: "P0:1"}


def test_dotlock_records_holder_and_replace_drops_it(tmp_path):
    """A new lock file holds PID:HOSTNAME; replace() leaves exactly the new contents."""
    path = str(tmp_path / "file")
    lock = dotlock.acquire(path)
    assert dotlock.read_holder(path + ".lock") == (os.getpid(), socket.gethostname())
    lock.replace(b"x")
    assert pathlib.Path(path).read_bytes() == b"x"


def test_dotlock_of_killed_process_is_broken_at_once(tmp_path):
    """A lock left by a process killed while holding it is taken at once, not after 2 minutes."""
    path = str(tmp_path / "dovecot-uidlist")
    code = ("import sys, time; from mailstack.store import dotlock; "
            "dotlock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"held\n"
        # While the holder lives, its fresh lock is respected.
        with pytest.raises(dotlock.LockTimeout):
            dotlock.acquire(path, timeout=0.1, stale_timeout=120)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert dotlock.read_holder(path + ".lock") == (proc.pid, socket.gethostname())
    started = time.monotonic()
    lock = dotlock.acquire(path, timeout=2, stale_timeout=120)
    assert lock.held and time.monotonic() - started < 1
    assert dotlock.read_holder(path + ".lock") == (os.getpid(), socket.gethostname())
    lock.release()


def test_dotlock_of_other_host_waits_for_age(tmp_path):
    """A fresh lock recorded by a pid on another host is not judged by pid: it is respected."""
    path = str(tmp_path / "file")
    pathlib.Path(path + ".lock").write_bytes(dotlock.holder_record(pid=2 ** 22 + 12345, host="elsewhere.example"))
    with pytest.raises(dotlock.LockTimeout):
        dotlock.acquire(path, timeout=0.1, stale_timeout=120)
    assert os.path.exists(path + ".lock")
