"""process_min_avail: one listening service served by the master and its worker processes (real twistd)."""

import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from twisted.internet import reactor

from mailstack import app
from mailstack.config.maincf import ConfigError
from tests.conftest import subprocess_env

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
RECIPIENT = "joe@example.test"


def free_port():
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Twistd:
    """``twistd -n mailstack`` in the background; its maillog lines are collected as they come."""

    def __init__(self, config_dir):
        self.proc = subprocess.Popen([TWISTD, "-n", "--pidfile=", "mailstack", "--config", str(config_dir)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=subprocess_env())
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace"))

    @property
    def output(self):
        return "".join(self.lines)

    def wait_for(self, pattern, timeout=15, count=1):
        """Wait until ``pattern`` (a regex) matches ``count`` lines; return the matches."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in (re.search(pattern, line) for line in list(self.lines)) if m]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline or (self.proc.poll() is not None and not self._reader.is_alive()):
                raise AssertionError("no %r (x%d) in output:\n%s" % (pattern, count, self.output))
            time.sleep(0.02)

    def worker_pids(self):
        return [int(m.group(1)) for m in re.finditer(r"service \S+: process (\d+) started", self.output)]

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        self.proc.stdout.close()
        return self.proc.returncode


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _setup(config_dir, master_cf, main_cf=""):
    with open(config_dir / "passwd", "a") as handle:
        handle.write("%s:{PLAIN}secret::::::\n" % RECIPIENT)
    (config_dir / "master.cf").write_text(master_cf)
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("smtpd_peername_lookup = no\n" + main_cf)


@pytest.fixture
def running():
    """Collects started servers and stops them whatever happens."""
    servers = []
    yield servers
    for server in servers:
        for pid in server.worker_pids():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.stop()


def _start(running, config_dir, workers=1):
    server = Twistd(config_dir)
    running.append(server)
    server.wait_for(r"daemon started")
    server.wait_for(r"worker of service \S+ \(master pid \d+\) accepting", count=workers)
    return server


def _send(port, number):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("sender@example.org", [RECIPIENT], "Subject: message %d\r\n\r\nbody %d\r\n" % (number, number))


def test_sessions_spread_over_two_processes_and_worker_mail_wakes_master_qmgr(config_dir, running):
    """With process_min_avail=2, sessions are served by two pids; mail a worker took is delivered at once."""
    port = free_port()
    _setup(config_dir, "smtp tcp:%d:interface=127.0.0.1 -o process_min_avail=2\nqmgr -\n" % port,
           "qmgr_scan_interval = 1h\n")
    server = _start(running, config_dir)
    master = server.proc.pid
    [worker] = server.worker_pids()
    messages = 0
    with ThreadPoolExecutor(8) as pool:
        # Which process accepts is the kernel's choice: a busy machine may
        # need more than one batch before both have taken sessions.
        for batch in range(5):
            list(pool.map(lambda n: _send(port, n), range(messages, messages + 40)))
            messages += 40
            pids = set(int(p) for p in re.findall(r"mailstack/smtpd\[(\d+)\]: connect from", server.output))
            if len(pids) == 2:
                break
    server.wait_for(r"status=sent", count=messages, timeout=10)
    assert pids == {master, worker}, server.output
    # Every message the worker accepted was delivered although the master's
    # queue manager only scans incoming/ once an hour: public/qmgr woke it.
    worker_ids = re.findall(r"mailstack/smtpd\[%d\]: ([0-9A-Za-z]+): client=" % worker, server.output)
    assert worker_ids, server.output
    for queue_id in worker_ids:
        assert re.search(r"mailstack/virtual\[%d\]: %s: to=<%s>.*status=sent" % (master, queue_id, RECIPIENT),
                         server.output), queue_id
    assert server.stop() in (0, -15)
    assert "Traceback" not in server.output


def test_killed_worker_is_logged_and_restarted_and_master_stop_leaves_no_worker(config_dir, running):
    """SIGKILL of a worker is logged Postfix-style and a new one takes its place; SIGTERM of the master ends them all."""
    port = free_port()
    _setup(config_dir, "smtp tcp:%d:interface=127.0.0.1 -o process_min_avail=2\n" % port)
    server = _start(running, config_dir)
    [first] = server.worker_pids()
    os.kill(first, signal.SIGKILL)
    server.wait_for(r"mailstack/master\[%d\]: warning: process \S+/mailstack/smtpd pid %d killed by signal 9"
                    % (server.proc.pid, first))
    server.wait_for(r"accepting", count=2)
    replacement = server.worker_pids()[-1]
    assert replacement != first and _alive(replacement)
    for n in range(5):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert client.noop()[0] == 250
    assert server.stop() in (0, -15)
    assert _wait_gone(replacement), "worker %d left running" % replacement
    assert "Server Shut Down." in server.output
    assert "did not stop" not in server.output


def test_worker_exits_when_the_master_dies(config_dir, running):
    """A worker whose master was SIGKILLed sees end-of-file on its channel and exits."""
    port = free_port()
    _setup(config_dir, "pop3 tcp:%d:interface=127.0.0.1 -o process_min_avail=2\n" % port)
    server = _start(running, config_dir)
    [worker] = server.worker_pids()
    master = server.proc.pid
    server.proc.kill()
    server.proc.wait()
    assert _wait_gone(worker), "worker survived its master"
    server.wait_for(r"\[%d\]: master pid %d is gone: worker exiting" % (worker, master))


def test_connection_count_limit_holds_across_processes(config_dir, running):
    """smtpd_client_connection_count_limit counts one client's connections over both processes (anvil)."""
    port = free_port()
    _setup(config_dir, "smtp tcp:%d:interface=127.0.0.1 -o process_min_avail=2\n" % port,
           "smtpd_client_connection_count_limit = 2\nsmtpd_client_event_limit_exceptions =\n")
    server = _start(running, config_dir)
    master, [worker] = server.proc.pid, server.worker_pids()
    held, refused = [], 0
    try:
        for attempt in range(60):
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            banner = client.recv(512)
            if banner.startswith(b"220"):
                held.append(client)
            else:
                assert banner.startswith(b"421 4.7.0"), banner
                refused += 1
                client.close()
            pids = set(int(p) for p in re.findall(r"mailstack/smtpd\[(\d+)\]: connect from", server.output))
            if refused >= 6 and pids == {master, worker}:
                break
        assert len(held) == 2, server.output
        assert pids == {master, worker}, server.output
        assert "Connection concurrency limit exceeded: 3 from" in server.output
    finally:
        for client in held:
            client.close()
    # Once the servers have seen the held connections close, the client is welcome again.
    deadline = time.monotonic() + 5
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                assert client.noop()[0] == 250
            break
        except smtplib.SMTPConnectError:
            assert time.monotonic() < deadline, server.output
            time.sleep(0.05)


def test_imaps_with_two_processes_answers_tls_from_the_worker(config_dir, running):
    """imaps with process_min_avail=2: the worker alone (master stopped) completes TLS handshakes."""
    port = free_port()
    _setup(config_dir, "imaps ssl:%d:interface=127.0.0.1 -o process_min_avail=2\n" % port)
    server = _start(running, config_dir)
    context = ssl.create_default_context(cafile=str(config_dir / "tls" / "ca.pem"))
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="mail.example.test") as tls:
                    assert tls.recv(512).startswith(b"* OK")
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def test_process_min_avail_on_an_internal_service_is_a_config_error(config_dir):
    """-o process_min_avail=2 on qmgr stops startup with master.cf:LINE: reason."""
    (config_dir / "master.cf").write_text("qmgr - -o process_min_avail=2\n")
    with pytest.raises(ConfigError, match=r"master.cf:1: process_min_avail: service qmgr \(qmgr\) runs in the master"):
        app.make_service(str(config_dir), reactor=reactor)


def test_process_min_avail_on_a_unix_listener_is_a_config_error(config_dir):
    """-o process_min_avail=2 on a unix: endpoint stops startup: only TCP sockets are shared."""
    (config_dir / "master.cf").write_text("smtp unix:%s -o process_min_avail=2\n" % (config_dir / "smtp.sock"))
    with pytest.raises(ConfigError, match=r"master.cf:1: process_min_avail: service smtp listens on unix"):
        app.make_service(str(config_dir), reactor=reactor)


def test_main_cf_process_min_avail_applies_to_listeners_only(config_dir):
    """process_min_avail in main.cf gives smtpd services workers and leaves internal services alone."""
    port = free_port()
    (config_dir / "master.cf").write_text("smtp tcp:%d:interface=127.0.0.1\nqmgr -\n" % port)
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("process_min_avail = 2\n")
    from mailstack.master.workers import WorkerPool
    root = app.make_service(str(config_dir), reactor=reactor)
    pools = [child for child in root.getServiceNamed("smtp") if isinstance(child, WorkerPool)]
    assert [pool.count for pool in pools] == [1]
    assert not isinstance(root.getServiceNamed("qmgr"), WorkerPool)


def test_default_is_one_process(config_dir):
    """Without process_min_avail, a listener has no worker pool (no extra process)."""
    (config_dir / "master.cf").write_text("smtp tcp:%d:interface=127.0.0.1\n" % free_port())
    from mailstack.master.workers import WorkerPool
    root = app.make_service(str(config_dir), reactor=reactor)
    assert not [child for child in root.getServiceNamed("smtp") if isinstance(child, WorkerPool)]
