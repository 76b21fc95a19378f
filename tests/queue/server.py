"""A real ``twistd -n mailstack`` process running only the queue services (qmgr, pickup)."""

import os
import signal
import subprocess
import sys
import time

from tests.conftest import run_cli, subprocess_env

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def prepare(config_dir, users=("alice@example.test",), extra=""):
    """Turn an init'ed config into a queue-only server: users, aliases.db, master.cf with qmgr and pickup."""
    with open(config_dir / "passwd", "a") as handle:
        for user in users:
            handle.write("%s:{PLAIN}secret::::::\n" % user)
    assert run_cli("--config", config_dir, "newaliases")[0] == 0
    (config_dir / "master.cf").write_text("qmgr -\npickup -\n")
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("qmgr_scan_interval = 0.2s\n" + extra)
    return config_dir


class Server:
    """Start, stop and SIGKILL a mailstack server; its maillog goes to ``log_path``."""

    def __init__(self, config_dir, log_path):
        self.config_dir = config_dir
        self.log_path = log_path
        self.proc = None

    def start(self, timeout=15):
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([TWISTD, "-n", "--pidfile=", "mailstack", "--config", str(self.config_dir)],
                                     stdout=log, stderr=subprocess.STDOUT, env=subprocess_env())
        log.close()
        self.wait_for("daemon started", timeout, offset)

    def log(self, offset=0):
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            return handle.read()

    def wait_for(self, text, timeout=15, offset=0, predicate=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate is not None:
                if predicate():
                    return
            elif text in self.log(offset):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("server exited:\n" + self.log(offset)[-3000:])
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %r:\n%s" % (text, self.log(offset)[-3000:]))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)
        self.proc = None
