"""A full disk under the queue: the client gets 452 4.3.1, the session goes on, nothing half-written is left."""

import os
import smtplib
import subprocess

import pytest
import pytest_twisted

from tests.smtpd.conftest import smtp_config_dir, smtpd  # noqa: F401  (fixtures)
from tests.smtpd.harness import in_thread


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs mounted for the test (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here: %s" % result.stderr.strip())
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _session(port, messages):
    """Send each (body) in one session; return the (code, text) of each end of DATA."""
    replies = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example.org")
        for body in messages:
            client.mail("a@example.org")
            client.rcpt("x@example.test")
            replies.append(client.data(body))
        replies.append(client.noop())
    return replies


def _fill(directory, keep_free):
    """Fill ``directory``'s file system until about ``keep_free`` bytes are left."""
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    with open(os.path.join(directory, "filler"), "wb") as handle:
        handle.write(b"x" * max(0, free - keep_free))


@pytest_twisted.ensureDeferred
async def test_full_disk_gives_452_and_the_session_goes_on(smtp_config_dir, smtpd, small_disk):
    """A message the disk cannot hold, at commit or while it streams, is answered 452 4.3.1; a small one after
    it is queued; no temporary file is left behind."""
    with open(os.path.join(str(smtp_config_dir), "main.cf"), "a") as handle:
        handle.write("queue_directory = %s\n" % (small_disk / "queue"))   # global, as in Postfix
    server = await smtpd()
    _fill(small_disk, 48 * 1024)
    small = b"Subject: small\r\n\r\nhello\r\n"
    at_commit = b"Subject: medium\r\n\r\n" + b"y" * 100 + b"\r\n" + (b"z" * 998 + b"\r\n") * 80
    streaming = b"Subject: big\r\n\r\n" + (b"w" * 998 + b"\r\n") * 400
    replies = await in_thread(_session, server.port, [at_commit, streaming, small])
    assert replies[0][0] == 452 and b"4.3.1 Error: insufficient system storage" in replies[0][1]
    assert replies[1][0] == 452 and b"4.3.1" in replies[1][1]
    assert replies[2][0] == 250
    assert replies[3][0] == 250   # the session is still in order
    assert server.temp_files() == []
    assert [b"Subject: small" in f.read_content() for f in server.queued()] == [True]
    assert len(server.logs.grep("queue file write error")) == 2
