"""The root service and twistd plugin: master.cf services, TLS listeners, startup errors."""

import os
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor, ssl

from mailstack import app
from mailstack.config.maincf import ConfigError
from tests.conftest import subprocess_env

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def _twistd(config_dir, timeout=20, until="daemon started"):
    """Start twistd -n mailstack; return (returncode, output) after `until` appears and SIGTERM.

    Never waits past ``timeout``: a server that never says ``until`` is
    terminated (then killed) and its output returned for the assertion.
    """
    import select
    proc = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "mailstack", "--config", str(config_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=subprocess_env())
    lines = []
    deadline = time.monotonic() + timeout
    terminated = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if until in line and not terminated:
            proc.terminate()
            terminated = True
    if proc.poll() is None and not terminated:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    lines.extend(proc.stdout.readlines())
    proc.stdout.close()
    return proc.returncode, "".join(lines)


def test_plugin_starts_from_init_config(config_dir):
    """twistd -n mailstack starts every service of init's master.cf and shuts down cleanly."""
    import re
    master = config_dir / "master.cf"
    # OS-chosen ports, so a demo running on the dev ports does not get in the way.
    master.write_text(re.sub(r"\b(tcp|ssl):\d+", r"\1:0", master.read_text()))
    status, output = _twistd(config_dir)
    assert "mailstack/master[" in output
    assert "daemon started" in output
    for service, program in (("smtp", "smtpd"), ("submission", "smtpd"), ("smtps", "smtpd"),
                             ("pop3", "pop3d"), ("pop3s", "pop3d"), ("imap", "imapd"),
                             ("imaps", "imapd"), ("qmgr", "qmgr"), ("pickup", "pickup")):
        assert "service %s (%s) on " % (service, program) in output
    assert "not available in this build" not in output
    assert "warning:" not in output, output
    assert "Traceback" not in output
    # twistd re-raises the SIGTERM it handled after a clean shutdown.
    assert status in (0, -15), output
    assert "Server Shut Down." in output


def test_plugin_is_listed():
    """The plugin shows in twistd --help."""
    out = subprocess.run([TWISTD, "--help"], capture_output=True, text=True,
                         env=subprocess_env()).stdout
    assert "mailstack" in out


def test_bad_config_stops_startup_with_line(config_dir):
    """A bad main.cf value stops twistd with main.cf:LINE: reason and a non-zero exit."""
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("message_size_limit = ten megabytes\n")
    lines = (config_dir / "main.cf").read_text().count("\n")
    status, output = _twistd(config_dir)
    assert status != 0
    assert "mailstack: fatal: main.cf:%d: parameter message_size_limit: bad size value" % lines in output
    assert "Traceback" not in output


def test_unknown_program_is_an_error(config_dir):
    """A master.cf program mailstack does not know is a configuration error."""
    (config_dir / "master.cf").write_text("odd tcp:0 frobd\n")
    with pytest.raises(ConfigError, match=r"master.cf:1: unknown program 'frobd'"):
        app.make_service(str(config_dir), reactor=reactor)


def test_ssl_without_certificate_is_an_error(config_dir, monkeypatch):
    """An ssl: endpoint with no certificate configured stops startup clearly."""
    monkeypatch.setitem(app.PROGRAMS, "echo", "tests.echo_program")
    (config_dir / "master.cf").write_text("echo ssl:0:interface=127.0.0.1 echo -o smtpd_tls_cert_file=\n")
    with pytest.raises(ConfigError, match=r"master.cf:1: service echo uses ssl: but no certificate"):
        app.make_service(str(config_dir), reactor=reactor)


def test_inet_interfaces_expansion(config_dir):
    """An endpoint without interface= gets one listener per inet_interfaces address."""
    from mailstack.config import maincf
    config = maincf.load(str(config_dir)).with_overrides(
        [maincf.Setting("inet_interfaces", "127.0.0.1, [::1]")])
    assert app.endpoint_descriptions("tcp:25", config) == [
        ("tcp:25:backlog=1024:interface=127.0.0.1", False), (r"tcp:25:backlog=1024:interface=\:\:1", False)]
    assert app.endpoint_descriptions("ssl:465:interface=127.0.0.2", config) == [
        ("tcp:465:interface=127.0.0.2:backlog=1024", True)]
    # An endpoint's own backlog wins over the default.
    assert app.endpoint_descriptions("tcp:25:backlog=5:interface=127.0.0.1", config) == [
        ("tcp:25:backlog=5:interface=127.0.0.1", False)]


class _Collect(protocol.Protocol):
    def connectionMade(self):
        self.received = b""
        self.done = defer.Deferred()
        self.transport.write(b"hello over tls")

    def dataReceived(self, data):
        self.received += data
        if self.received == b"hello over tls":
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.done.callback(self.received)


@pytest_twisted.ensureDeferred
async def test_tls_listener_handshake_with_generated_certificate(config_dir, monkeypatch):
    """An ssl: master.cf service completes a verified TLS handshake using init's CA and certificate."""
    monkeypatch.setitem(app.PROGRAMS, "echo", "tests.echo_program")
    (config_dir / "master.cf").write_text("echo ssl:0:interface=127.0.0.1 echo\n")
    root = app.make_service(str(config_dir), reactor=reactor)
    root.privilegedStartService()
    root.startService()
    try:
        listener = root.getServiceNamed("echo")
        port = (await list(listener)[0]._waitingForPort).getHost().port
        ca = ssl.Certificate.loadPEM((config_dir / "tls/ca.pem").read_bytes())
        for name in ("localhost", "mail.example.test"):
            options = ssl.optionsForClientTLS(name, trustRoot=ca)
            client = endpoints.wrapClientTLS(options, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port))
            proto = await endpoints.connectProtocol(client, _Collect())
            assert await proto.done == b"hello over tls"
    finally:
        await root.stopService()
