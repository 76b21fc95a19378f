"""Maildir file names, flags in the info part, and crash-safe delivery."""

import os
import time

import pytest

from mailstack.store import maildir


def test_deliver_names_and_sizes(tmp_path):
    """A delivery lands in new/ with time, pid, sequence, host, S= and W= in its name."""
    md = maildir.ensure(str(tmp_path / "Maildir"))
    result = maildir.deliver(md, b"Subject: x\r\n\r\nbody\r\n", hostname="mx/a:b")
    assert os.path.exists(result.path) and os.path.dirname(result.path).endswith("/new")
    assert result.size == 17 and result.vsize == 20
    secs, rest = result.name.split(".", 1)
    assert abs(int(secs) - time.time()) < 5
    assert rest.startswith("M") and "P%dQ" % os.getpid() in rest
    assert rest.endswith(".mx\\057a\\072b,S=17,W=20")
    with open(result.path, "rb") as handle:
        assert handle.read() == b"Subject: x\n\nbody\n"
    assert os.listdir(os.path.join(md, "tmp")) == []


def test_deliver_with_flags_goes_to_cur(tmp_path):
    """A delivery with info goes straight to cur/ with :2,INFO."""
    md = maildir.ensure(str(tmp_path / "Maildir"))
    result = maildir.deliver(md, b"x\n", info="FS", mtime=1000000000)
    assert result.path.endswith(":2,FS") and "/cur/" in result.path
    assert os.stat(result.path).st_mtime == 1000000000


def test_names_are_unique(tmp_path):
    """Many deliveries in the same microsecond still get distinct names."""
    md = maildir.ensure(str(tmp_path / "Maildir"))
    names = {maildir.deliver(md, b"x\n", fsync=False).base for _ in range(200)}
    assert len(names) == 200


def test_failed_delivery_leaves_nothing(tmp_path):
    """A delivery aborted before the rename leaves no file in tmp/, new/ or cur/."""
    md = maildir.ensure(str(tmp_path / "Maildir"))

    def abort(path):
        assert os.path.exists(path)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        maildir.deliver(md, b"x\n", before_commit=abort)
    for sub in ("tmp", "new", "cur"):
        assert os.listdir(os.path.join(md, sub)) == []


def test_clean_tmp_removes_only_old_files(tmp_path):
    """tmp/ files older than 36 hours are removed, recent ones stay."""
    md = maildir.ensure(str(tmp_path / "Maildir"))
    old, new = os.path.join(md, "tmp", "old"), os.path.join(md, "tmp", "new")
    for path in (old, new):
        open(path, "w").close()
    os.utime(old, (time.time() - 37 * 3600,) * 2)
    assert maildir.clean_tmp(md) == 1
    assert os.listdir(os.path.join(md, "tmp")) == ["new"]


@pytest.mark.parametrize("name,expected", [
    ("1.M2P3.h,S=10,W=12:2,FS", ("1.M2P3.h,S=10,W=12", "FS", 10, 12)),
    ("1.M2P3.h", ("1.M2P3.h", None, None, None)),
    ("1.M2P3.h:2,", ("1.M2P3.h", "", None, None)),
    ("1.M2P3.h,S=5:1,x", ("1.M2P3.h,S=5", None, 5, None)),
], ids=["full", "bare", "empty-info", "old-info"])
def test_parse(name, expected):
    """File names split into base, info and the S=/W= sizes."""
    parsed = maildir.parse(name)
    assert (parsed.base, parsed.info, parsed.size, parsed.vsize) == expected


def test_info_letters_sorted_and_split():
    """Flags become sorted letters; P and keyword letters survive a split."""
    assert maildir.info_letters({"\\Seen", "\\Draft", "\\Answered", "\\Flagged", "\\Deleted"}, "ca") == "DFRSTac"
    flags, keywords, other = maildir.split_info("FPSab")
    assert flags == {"\\Flagged", "\\Seen"} and keywords == "ab" and other == "P"


def test_killed_writer_leaves_no_partial_message(tmp_path):
    """A delivering process killed mid-write leaves only complete messages in new/ (partial ones stay in tmp/)."""
    import signal
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    md = maildir.ensure(str(tmp_path / "Maildir"))
    script = ("import sys; from mailstack.store import maildir\n"
              "data = b'x' * (4 << 20) + b'\\n'\n"
              "print('ready', flush=True)\n"
              "while True: maildir.deliver(sys.argv[1], data)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, md], env=subprocess_env(), stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    deadline = time.monotonic() + 10
    while len(os.listdir(os.path.join(md, "new"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    delivered = os.listdir(os.path.join(md, "new"))
    assert len(delivered) >= 2
    for name in delivered:
        assert os.path.getsize(os.path.join(md, "new", name)) == maildir.parse(name).size == (4 << 20) + 1


def test_deliver_streams_a_file_object(tmp_path):
    """A file object is copied in chunks; CRLF split across chunk boundaries still becomes LF."""
    import io

    md = maildir.ensure(str(tmp_path / "Maildir"))
    # Byte 65,536 (the end of the first 64 KiB chunk) is the CR of a CRLF.
    text = b"x" * 65535 + b"\r\n" + b"".join(b"line %d\r\n" % i for i in range(50000)) + b"end\r"
    result = maildir.deliver(md, io.BytesIO(text))
    with open(result.path, "rb") as handle:
        stored = handle.read()
    assert stored == text.replace(b"\r\n", b"\n")
    assert (result.size, result.vsize) == (len(stored), len(text))
    assert result.name.endswith(",S=%d,W=%d" % (len(stored), len(text)))


def test_concurrent_deliveries_share_directory_fsyncs(tmp_path, monkeypatch):
    """Twenty threads delivering into one maildir share a few new/ fsyncs, each started after its rename."""
    import threading
    root = maildir.ensure(str(tmp_path / "Maildir"))
    new = os.path.join(root, "new")
    fsyncs = []

    def slow_fsync(path):
        fsyncs.append((path, set(os.listdir(path))))
        time.sleep(0.05)
    from mailstack.util import atomic
    monkeypatch.setattr(atomic, "fsync_directory", slow_fsync)
    delivered = []
    threads = [threading.Thread(target=lambda: delivered.append(maildir.deliver(root, b"Subject: x\n\nbody\n")))
               for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in threads)
    assert len(delivered) == 20 and 1 <= len(fsyncs) <= 4
    assert all(path == new for path, _ in fsyncs)
    # The last fsync saw every message's rename: none returned before its file was covered.
    assert {d.name for d in delivered} <= fsyncs[-1][1]
    assert atomic._dir_syncs == {}
