"""Real clients and Dovecot against mailstack's POP3: fetchmail over POP3S, Dovecot's pop3 on the same maildir."""

import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile

import pytest
import pytest_twisted

from tests.pop3d import helpers
from tests.pop3d.helpers import PASSWORDS, message

JOE = "joe@example.test"
FETCHMAIL = shutil.which("fetchmail")
DOVECOT_POP3 = "/usr/lib/dovecot/pop3"


def _fetchmail(home, port, ca, out):
    rc = os.path.join(home, "fetchmailrc")
    with open(rc, "w") as handle:
        handle.write(
            'set no syslog\n'
            'poll localhost via 127.0.0.1 with proto POP3 port %d uidl\n'
            '  user "%s" there with password "%s" is "%s" here\n'
            '  options keep ssl sslcertck sslcertfile "%s" sslcommonname "localhost"\n'
            '  mda "/bin/sh -c \'cat >> %s\'"\n'
            % (port, JOE, PASSWORDS[JOE], pwd.getpwuid(os.geteuid()).pw_name, ca, out))
    os.chmod(rc, stat.S_IRUSR | stat.S_IWUSR)
    env = {"HOME": home, "PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    proc = subprocess.run([FETCHMAIL, "-v", "--nodetach", "-f", rc, "--idfile", os.path.join(home, "fetchids")],
                          capture_output=True, text=True, env=env, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail is not installed")
@pytest_twisted.ensureDeferred
async def test_fetchmail_pop3s_keep_then_nothing_new(config_dir, tmp_path):
    """fetchmail retrieves over POP3S with keep, verifying init's CA; a second run finds nothing new."""
    server = await helpers.start(config_dir)
    try:
        server.deliver(JOE, message("first", body=".starts with a dot\n"), message("second"))
        out = tmp_path / "fetched.mbox"
        ca = str(config_dir / "tls" / "ca.pem")
        status, log = await server.in_thread(_fetchmail, str(tmp_path), server.ports["pop3s"], ca, str(out))
        assert status == 0, log
        fetched = out.read_bytes()
        assert fetched.count(b"Subject: first") == 1 and fetched.count(b"Subject: second") == 1, log
        assert b"\n.starts with a dot\n" in fetched
        status, log = await server.in_thread(_fetchmail, str(tmp_path), server.ports["pop3s"], ca, str(out))
        assert status == 1, log  # 1: no new mail
        assert out.read_bytes() == fetched
        server.deliver(JOE, message("third"))
        status, log = await server.in_thread(_fetchmail, str(tmp_path), server.ports["pop3s"], ca, str(out))
        assert status == 0, log
        assert out.read_bytes().count(b"Subject: ") == 3
        folder = server.mailbox(JOE).folder("INBOX")
        folder.sync()
        assert len(folder.messages()) == 3  # keep: nothing deleted
    finally:
        await helpers.stop(server)
    assert server.log_text().count("pop3-login: Login: user=<joe@example.test>, method=") == 3
    assert ", TLS" in server.log_text()


@pytest.fixture
def shared_site():
    """A world-traversable directory (Dovecot refuses to run as root) holding joe's maildir."""
    base = tempfile.mkdtemp(prefix="mailstack-pop3-dovecot-", dir="/tmp")
    os.chmod(base, 0o755)
    user = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    maildir = os.path.join(base, "joe", "Maildir")
    with open(os.path.join(base, "dovecot.conf"), "w") as handle:
        handle.write("\n".join([
            "mail_location = maildir:%s" % maildir,
            "mail_uid = %d" % user.pw_uid, "mail_gid = %d" % user.pw_gid,
            "first_valid_uid = %d" % min(user.pw_uid, 1), "first_valid_gid = %d" % min(user.pw_gid, 1),
            "log_path = /dev/stderr", "ssl = no", "protocols = pop3",
            "base_dir = %s/run" % base, "state_dir = %s/state" % base,
            "pop3_uidl_format = %08Xu%08Xv", ""]))
    yield {"base": base, "maildir": maildir, "uid": user.pw_uid, "gid": user.pw_gid}
    shutil.rmtree(base, ignore_errors=True)


def _dovecot_pop3(site, commands):
    """Run Dovecot's pop3 pre-authenticated on the site's maildir; return its reply lines."""
    if os.geteuid() == 0:
        for directory, dirs, files in os.walk(os.path.join(site["base"], "joe")):
            os.chown(directory, site["uid"], site["gid"])
            for name in files:
                os.chown(os.path.join(directory, name), site["uid"], site["gid"])
    script = "".join(c + "\r\n" for c in commands) + "QUIT\r\n"
    env = {"USER": "joe", "HOME": os.path.join(site["base"], "joe"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([DOVECOT_POP3, "-c", os.path.join(site["base"], "dovecot.conf")],
                          input=script.encode(), capture_output=True, env=env, timeout=20)
    errors = [line for line in proc.stderr.decode().splitlines() if "Error" in line or "Fatal" in line]
    assert not errors, errors
    return proc.stdout.decode("utf-8", "replace").split("\r\n")


def _listing(lines, command_index):
    """The body lines of the COMMAND_INDEX-th multi-line reply in a transcript."""
    blocks, current = [], None
    for line in lines:
        if current is None:
            if line.startswith("+OK") and (line == "+OK" or re.match(r"\+OK \d+ messages", line)):
                current = []
            continue
        if line == ".":
            blocks.append(current)
            current = None
        else:
            current.append(line)
    return blocks[command_index]


@pytest.mark.skipif(not os.access(DOVECOT_POP3, os.X_OK), reason="Dovecot's pop3 binary is not installed")
@pytest_twisted.ensureDeferred
async def test_same_uidls_and_sizes_as_dovecot(config_dir, shared_site):
    """Dovecot's pop3 and mailstack give the same UIDLs and octet counts for one maildir, either first."""
    location = "mail_location = maildir:%s/%%n/Maildir\n" % shared_site["base"]
    server = await helpers.start(config_dir, extra_main_cf=location)
    try:
        server.deliver(JOE, message("mailstack one"), message("mailstack two", body="x\n.y\n"))
        box = server.mailbox(JOE)
        assert box.root == shared_site["maildir"]
        # A file dropped by another delivery agent: CRLF lines, no ,S= or ,W= in its name.
        with open(os.path.join(box.root, "new", "1700000000.foreign.host"), "wb") as handle:
            handle.write(b"Subject: foreign\r\n\r\nCRLF body\r\n.dot\r\n")
        dovecot = _dovecot_pop3(shared_site, ["UIDL", "LIST"])

        def ours():
            client = server.client()
            client.user(JOE)
            client.pass_(PASSWORDS[JOE])
            result = client.uidl()[1], client.list()[1]
            client.quit()
            return result
        uidl, listing = await server.in_thread(ours)
        assert [line.decode() for line in uidl] == _listing(dovecot, 0)
        assert [line.decode() for line in listing] == _listing(dovecot, 1)
        assert len(uidl) == 3
        # And a message delivered by mailstack after Dovecot's session.
        server.deliver(JOE, message("mailstack three"))
        uidl, listing = await server.in_thread(ours)
        dovecot = _dovecot_pop3(shared_site, ["UIDL", "LIST"])
        assert [line.decode() for line in uidl] == _listing(dovecot, 0)
        assert [line.decode() for line in listing] == _listing(dovecot, 1)
    finally:
        await helpers.stop(server)


@pytest.mark.skipif(not os.access(DOVECOT_POP3, os.X_OK), reason="Dovecot's pop3 binary is not installed")
@pytest_twisted.ensureDeferred
async def test_retr_after_dovecot_moved_messages_to_cur(config_dir, shared_site):
    """After Dovecot's pop3 session moved new/ to cur/, the same mailstack process still retrieves them."""
    location = "mail_location = maildir:%s/%%n/Maildir\n" % shared_site["base"]
    server = await helpers.start(config_dir, extra_main_cf=location)
    try:
        server.deliver(JOE, message("moved"))

        def ours():
            client = server.client()
            try:
                client.user(JOE)
                client.pass_(PASSWORDS[JOE])
                result = client.retr(1)[1]
                client.rset()
                client.quit()
                return result
            finally:
                client.close()
        assert b"Subject: moved" in b"\n".join(await server.in_thread(ours))
        _dovecot_pop3(shared_site, ["LIST"])  # Dovecot moves new/ to cur/
        assert not os.listdir(os.path.join(shared_site["maildir"], "new"))
        assert b"Subject: moved" in b"\n".join(await server.in_thread(ours))
    finally:
        await helpers.stop(server)
