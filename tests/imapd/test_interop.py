"""Real clients end to end: mbsync (isync) syncing both ways over IMAPS, and mutt in tmux over IMAPS."""

import os
import shutil
import subprocess
import time
import uuid

import pytest
import pytest_twisted

from tests.imapd.conftest import USERS, connect, in_thread

needs_mbsync = pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync (mbsync) is not installed")
needs_mutt = pytest.mark.skipif(shutil.which("mutt") is None or shutil.which("tmux") is None,
                                reason="mutt and tmux are not installed")

MBSYNCRC = """\
IMAPAccount test
Host localhost
Port {port}
User alice@example.test
Pass {password}
SSLType IMAPS
CertificateFile {ca}

IMAPStore remote
Account test

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel test
Far :remote:
Near :local:
Patterns INBOX Archive
Create Both
Expunge Both
SyncState *
"""


def _mbsync(rc):
    result = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _local_files(directory):
    return sorted(os.listdir(directory / "cur")) + sorted(os.listdir(directory / "new"))


@needs_mbsync
@pytest_twisted.ensureDeferred
async def test_mbsync_syncs_both_ways(imap_server, tmp_path):
    """mbsync pulls INBOX, then pushes a local flag, a local deletion and a new local message back."""
    local = tmp_path / "local"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(MBSYNCRC.format(port=imap_server.ports["imaps"], password=USERS["alice@example.test"],
                                  ca=imap_server.config_dir / "tls" / "ca.pem", local=local))

    def seed():
        conn = connect(imap_server)
        for n in (1, 2, 3):
            conn.append("ok", "INBOX", b"From: a@example.test\r\nSubject: msg %d\r\n\r\nbody %d\r\n" % (n, n))
        conn.close()

    await in_thread(seed)
    await in_thread(_mbsync, rc)
    inbox = local / "INBOX"
    files = _local_files(inbox)
    assert len(files) == 3

    # Locally: flag the message with subject "msg 1", delete "msg 2", add a new one.
    by_subject = {}
    for sub in ("cur", "new"):
        for name in os.listdir(inbox / sub):
            data = (inbox / sub / name).read_bytes()
            by_subject[data.split(b"Subject: ")[1].split(b"\n")[0].strip()] = (sub, name)
    sub, name = by_subject[b"msg 1"]
    base = name.split(":2,")[0]
    os.rename(inbox / sub / name, inbox / "cur" / (base + ":2,FS"))
    sub, name = by_subject[b"msg 2"]
    os.unlink(inbox / sub / name)
    new_name = "%d.%s.localhost:2,S" % (time.time(), uuid.uuid4().hex)
    (inbox / "cur" / new_name).write_bytes(b"From: alice@example.test\nSubject: written offline\n\nhi\n")
    await in_thread(_mbsync, rc)

    def verify():
        conn = connect(imap_server)
        conn.transact("ok", "SELECT INBOX")
        lines = conn.transact("ok", "FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])").untagged
        conn.close()
        return lines

    lines = await in_thread(verify)
    summary = {line.split(b"Subject: ")[1].split(b"\r\n")[0]: line.split(b"FLAGS (")[1].split(b")")[0]
               for line in lines}
    assert set(summary) == {b"msg 1", b"msg 3", b"written offline"}, lines
    assert b"\\Flagged" in summary[b"msg 1"] and b"\\Seen" in summary[b"msg 1"]
    assert b"\\Seen" in summary[b"written offline"]


MUTTRC = """\
set folder="imaps://alice%40example.test@localhost:{port}/"
set spoolfile="+INBOX"
set imap_pass="{password}"
set ssl_ca_certificates_file="{ca}"
set certificate_file="{home}/certificates"
set ssl_force_tls=yes
set imap_check_subscribed=no
set header_cache=""
set message_cachedir=""
set sort=date
set index_format="%4C %s"
set mail_check=60
set timeout=60
set charset="utf-8"
"""


def _tmux(*args):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10)


@needs_mutt
@pytest_twisted.ensureDeferred
async def test_mutt_shows_inbox_subjects_over_imaps(imap_server, tmp_path):
    """mutt, driven in tmux, opens INBOX over IMAPS (verifying init's CA) and shows the subjects."""
    def seed():
        conn = connect(imap_server)
        for subject in (b"Lunch on Friday", b"Quarterly numbers"):
            conn.append("ok", "INBOX", b"From: bob@example.test\r\nTo: alice@example.test\r\n"
                                       b"Date: Mon, 01 Mar 2021 09:00:00 +0000\r\nSubject: %s\r\n\r\nhi\r\n" % subject)
        conn.close()

    await in_thread(seed)
    home = tmp_path / "mutt-home"
    home.mkdir()
    muttrc = home / ".muttrc"
    muttrc.write_text(MUTTRC.format(port=imap_server.ports["imaps"], password=USERS["alice@example.test"],
                                    ca=imap_server.config_dir / "tls" / "ca.pem", home=home))
    session = "mailstack-mutt-%s" % uuid.uuid4().hex[:8]
    socket_name = "mailstack-test-%s" % uuid.uuid4().hex[:8]
    env = dict(os.environ, HOME=str(home), TERM="xterm")

    def drive():
        started = subprocess.run(
            ["tmux", "-L", socket_name, "new-session", "-d", "-s", session, "-x", "120", "-y", "30",
             "mutt -n -F %s" % muttrc], env=env, capture_output=True, text=True, timeout=10)
        assert started.returncode == 0, started.stderr
        screen = ""
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                screen = _tmux("-L", socket_name, "capture-pane", "-p", "-t", session).stdout
                if "Quarterly numbers" in screen and "Lunch on Friday" in screen:
                    break
                time.sleep(0.2)
            _tmux("-L", socket_name, "send-keys", "-t", session, "q")
        finally:
            _tmux("-L", socket_name, "kill-server")
        return screen

    screen = await in_thread(drive)
    assert "Lunch on Friday" in screen and "Quarterly numbers" in screen, screen
