"""Differential test: mailstack's auth socket answers like Dovecot's own auth process.

The same scripted client conversations run against a real Dovecot 2.3
(``dovecot`` binary, started on a temporary base_dir) and against
mailstack's ``auth`` service, both reading the same Dovecot-format
passwd-file; their replies must be the same once the per-process values
(SPID, CUID, COOKIE, CRAM-MD5's challenge) are masked.  Skipped when
Dovecot is not installed (the Debian package ``dovecot-core`` comes with
``dovecot-imapd``, which ``.ci/run`` installs).
"""

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from mailstack import app
from mailstack.auth.mechs.client import client_for
from tests.conftest import run_cli

MECHANISMS = "plain login cram-md5 scram-sha-256"
CLIENT_HANDSHAKE = b"VERSION\t1\t0\nCPID\t4242\n"
# `no-penalty` keeps Dovecot's per-IP penalty (anvil) out of the timing; mailstack ignores it.
COMMON = "service=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tno-penalty"

DOVECOT_CONF = """\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/log
protocols =
ssl = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid=1000 gid=1000 home=/nonexistent/%u
}}
service auth {{
  unix_listener auth-compare {{
    mode = 0666
  }}
}}
default_internal_user = root
default_internal_group = root
default_login_user = root
"""


def b64(data):
    return base64.b64encode(data).decode()


class LineClient:
    """A blocking auth client over a Unix socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buffer = b""

    def line(self):
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def send(self, text):
        self.sock.sendall(text.encode() + b"\n")

    def close(self):
        self.sock.close()


def _mask(line):
    fields = line.split("\t")
    if fields[0] in ("SPID", "CUID", "COOKIE"):
        return fields[0] + "\t*"
    return line


def _greeting(client):
    lines = []
    while True:
        line = client.line()
        lines.append(_mask(line))
        if line in ("DONE", None):
            return lines


def _conversations(path):
    """Run every scripted conversation against the server at ``path``; return the transcript."""
    out = []
    client = LineClient(path)
    out += _greeting(client)
    client.sock.sendall(CLIENT_HANDSHAKE)

    def ask(text):
        client.send(text)
        reply = client.line()
        out.append(reply)
        return reply

    ask("AUTH\t1\tPLAIN\t%s\tresp=%s" % (COMMON, b64(b"\0joe@example.test\0secret")))
    ask("AUTH\t2\tPLAIN\t%s\tresp=%s" % (COMMON, b64(b"\0joe@example.test\0wrong")))
    ask("AUTH\t3\tPLAIN\t%s\tresp=%s" % (COMMON, b64(b"\0ann@example.test\0annpass")))
    ask("AUTH\t4\tPLAIN\t%s\tresp=%s" % (COMMON, b64(b"\0nobody@example.test\0x")))
    ask("AUTH\t5\tLOGIN\t%s" % COMMON)
    ask("CONT\t5\t%s" % b64(b"joe@example.test"))
    ask("CONT\t5\t%s" % b64(b"secret"))
    ask("AUTH\t6\tPLAIN\t%s" % COMMON)
    ask("CONT\t6\t%s" % b64(b"\0joe@example.test\0secret"))
    ask("AUTH\t7\tPLAIN\t%s\tresp=%%%%%%" % COMMON)
    ask("CONT\t99\t%s" % b64(b"late"))
    reply = ask("AUTH\t8\tCRAM-MD5\t%s" % COMMON)
    cram = client_for("CRAM-MD5", "joe@example.test", "secret")
    ask("CONT\t8\t%s" % b64(cram.respond(base64.b64decode(reply.split("\t")[2]))))
    out[-2] = "CONT\t8\t<challenge>" if reply.startswith("CONT\t8\t") else reply
    reply = ask("AUTH\t9\tCRAM-MD5\t%s" % COMMON)
    cram = client_for("CRAM-MD5", "ann@example.test", "annpass")
    ask("CONT\t9\t%s" % b64(cram.respond(base64.b64decode(reply.split("\t")[2]))))
    out[-2] = "CONT\t9\t<challenge>" if reply.startswith("CONT\t9\t") else reply
    for request_id, extra in ((11, ""), (12, "\tfinal-resp-ok")):
        out.extend(_scram(client, request_id, extra))
    # Last: an unknown mechanism makes both drop the connection.
    client.send("AUTH\t10\tFOO\t%s" % COMMON)
    out.append(client.line())
    client.close()
    return out


def _scram(client, request_id, extra):
    """SCRAM-SHA-256 for joe; return the replies with the random parts masked."""
    scram = client_for("SCRAM-SHA-256", "joe@example.test", "secret")
    client.send("AUTH\t%d\tSCRAM-SHA-256\t%s%s\tresp=%s" % (request_id, COMMON, extra, b64(scram.start())))
    out = []
    reply = client.line()
    while reply.startswith("CONT\t"):
        data = base64.b64decode(reply.split("\t")[2])
        if data.startswith(b"v="):
            scram.finish(data)                    # the server signature comes as one more CONT
            out.append("CONT\t%d\t<server signature>" % request_id)
            client.send("CONT\t%d\t" % request_id)
        else:
            out.append("CONT\t%d\t<server-first>" % request_id)
            client.send("CONT\t%d\t%s" % (request_id, b64(scram.respond(data))))
        reply = client.line()
    fields = reply.split("\t")
    for index, field in enumerate(fields):
        if field.startswith("resp="):
            scram.finish(base64.b64decode(field[5:]))   # ... or in OK resp=
            fields[index] = "resp=<server signature>"
    out.append("\t".join(fields))
    return out


class Dovecot:
    """A real Dovecot with only an auth service, in a short temporary base_dir (socket paths are limited)."""

    def __init__(self, passwd):
        self.base = tempfile.mkdtemp(prefix="ms-authcmp-")
        for sub in ("run", "state"):
            os.makedirs(os.path.join(self.base, sub))
        self.conf = os.path.join(self.base, "dovecot.conf")
        with open(self.conf, "w") as handle:
            handle.write(DOVECOT_CONF.format(base=self.base, mechanisms=MECHANISMS, passwd=passwd))
        self.socket = os.path.join(self.base, "run", "auth-compare")

    def start(self):
        # Output to a file, not a pipe: the daemon inherits it and would keep a pipe open.
        with open(os.path.join(self.base, "startup.out"), "w") as output:
            subprocess.run(["dovecot", "-c", self.conf], check=True, stdout=output, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=30)
        deadline = time.monotonic() + 15
        while not os.path.exists(self.socket) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(self.socket), self.log()

    def log(self):
        try:
            with open(os.path.join(self.base, "log")) as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        pid_file = os.path.join(self.base, "run", "master.pid")
        try:
            with open(pid_file) as handle:
                pid = int(handle.read().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def passwd_file(config_dir):
    for user, password, scheme in (("joe@example.test", "secret", "PLAIN"),
                                   ("ann@example.test", "annpass", "SHA512-CRYPT")):
        status, _, err = run_cli("--config", config_dir, "user", "add", user, "--password", password,
                                 "--scheme", scheme)
        assert status == 0, err
    return config_dir / "passwd"


@pytest_twisted.ensureDeferred
async def test_same_replies_as_dovecot(config_dir, passwd_file):
    """Handshake, PLAIN/LOGIN/CRAM-MD5/SCRAM successes and failures, bad base64, late CONT, bad mechanism: as Dovecot."""
    if shutil.which("dovecot") is None:
        pytest.skip("dovecot is not installed (Debian package dovecot-core)")
    dovecot = Dovecot(str(passwd_file))
    try:
        await threads.deferToThread(dovecot.start)
        expected = await threads.deferToThread(_conversations, dovecot.socket)
    finally:
        await threads.deferToThread(dovecot.stop)

    with open(config_dir / "main.cf", "a") as handle:
        handle.write("auth_mechanisms = %s\nauth_failure_delay = 0\n" % MECHANISMS)
    path = str(config_dir / "auth-compare")
    (config_dir / "master.cf").write_text("auth unix:%s:mode=0666 auth\n" % path)
    root = app.make_service(str(config_dir), reactor=reactor)
    root.privilegedStartService()
    root.startService()
    try:
        actual = await threads.deferToThread(_conversations, path)
    finally:
        await root.stopService()
    assert expected[-1] is None, expected   # Dovecot dropped the connection at the unknown mechanism
    assert actual == expected
