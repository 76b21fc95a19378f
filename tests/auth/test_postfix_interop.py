"""A real Postfix authenticates SMTP clients through mailstack's Dovecot auth socket.

Postfix (``smtpd_sasl_type = dovecot``) runs on 127.0.0.1 from a temporary
directory (:mod:`tests.interop.postfix`); mailstack's ``auth`` service runs
in this process with the real :class:`~mailstack.auth.service.AuthService`
over the passwd-file written by ``mailstack init`` and filled by ``mailstack
user add``; ``swaks`` and smtplib are the SMTP clients.  Skipped only when Postfix (or swaks) is not installed.
"""

import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from mailstack import app
from tests.auth.helpers import captured_log
from tests.conftest import run_cli, subprocess_env
from tests.interop.postfix import PostfixInstance, free_port, skip_reason

USER = "joe@example.test"
PASSWORD = "correct horse"
CRAM_USER = "ann@example.test"   # stored as {PLAIN}, so CRAM-MD5 can serve her


def _swaks(port, *args):
    """Run swaks against 127.0.0.1:port up to AUTH; return (status, transcript)."""
    result = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, "--quit-after", "AUTH",
                             "--timeout", "15"] + list(args), capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def postfix_with_mailstack_auth(tmp_path_factory):
    """A started Postfix whose smtpd asks mailstack's auth service (running in-process) over private/auth.

    Module-scoped: starting Postfix takes a few seconds, and the tests only read from it.
    """
    reason = skip_reason() or (shutil.which("swaks") is None and
                               "swaks is not installed (Debian package 'swaks'; .ci/run installs it)")
    if reason:
        pytest.skip(reason)
    config_dir = tmp_path_factory.mktemp("mailstack") / "etc"
    status, _, err = run_cli("--config", config_dir, "init", "--ports", "dev", "--domain", "example.test")
    assert status == 0, err
    twistd_port, inet_port, auth_port = free_port(), free_port(), free_port()
    postfix = PostfixInstance(main_cf={
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": "private/auth",
        # STARTTLS with the certificate mailstack init made (read by smtpd as root, before it drops privileges).
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": config_dir / "tls" / "server.pem",
        "smtpd_tls_key_file": config_dir / "tls" / "server.key",
    }, master_cf=(
        # A second smtpd for the test that runs mailstack under twistd, a third one that reaches
        # mailstack's auth service over TCP.
        "127.0.0.1:%d inet n - n - - smtpd -o smtpd_sasl_path=private/auth-twistd\n"
        "127.0.0.1:%d inet n - n - - smtpd -o smtpd_sasl_path=inet:127.0.0.1:%d\n"
        % (twistd_port, inet_port, auth_port)))
    postfix.twistd_port = twistd_port
    postfix.inet_port = inet_port
    postfix.mailstack_config = config_dir
    try:
        postfix.check()
        for user, scheme in ((USER, "SHA512-CRYPT"), (CRAM_USER, "PLAIN")):
            status, _, err = run_cli("--config", config_dir, "user", "add", user, "--password", PASSWORD,
                                     "--scheme", scheme)
            assert status == 0, err
        with open(config_dir / "main.cf", "a") as handle:
            handle.write("auth_mechanisms = plain login cram-md5\nauth_failure_delay = 0.2s\n")
        (config_dir / "master.cf").write_text("auth unix:%s:mode=0666 auth\n"
                                              "auth-inet tcp:%d:interface=127.0.0.1 auth\n"
                                              % (postfix.private_path("auth"), auth_port))
        root = app.make_service(str(config_dir), reactor=reactor)
        root.privilegedStartService()
        root.startService()
        try:
            postfix.start()
            yield postfix
        finally:
            pytest_twisted.blockon(root.stopService())
    finally:
        postfix.cleanup()


@pytest_twisted.ensureDeferred
async def test_postfix_accepts_plain_and_login_and_refuses_a_wrong_password(postfix_with_mailstack_auth):
    """AUTH PLAIN and AUTH LOGIN succeed through mailstack; a wrong password gets 535 from Postfix."""
    postfix = postfix_with_mailstack_auth
    with captured_log() as lines:
        status, out = await threads.deferToThread(_swaks, postfix.port, "--auth", "PLAIN",
                                                  "--auth-user", USER, "--auth-password", PASSWORD)
        assert status == 0, out + postfix.log()
        assert "250-AUTH PLAIN LOGIN" in out
        assert "235 2.7.0 Authentication successful" in out

        status, out = await threads.deferToThread(_swaks, postfix.port, "--auth", "LOGIN",
                                                  "--auth-user", USER, "--auth-password", PASSWORD)
        assert status == 0, out + postfix.log()
        assert "334 VXNlcm5hbWU6" in out   # "Username:", the prompt mailstack's LOGIN sends
        assert "235 2.7.0 Authentication successful" in out

        status, out = await threads.deferToThread(_swaks, postfix.port, "--auth", "PLAIN",
                                                  "--auth-user", USER, "--auth-password", "wrong")
        assert status != 0
        assert "535 5.7.8 Error: authentication failed" in out
    assert sum("authenticated, method=PLAIN" in line and USER in line for line in lines) == 1
    assert sum("authenticated, method=LOGIN" in line and USER in line for line in lines) == 1
    assert any("Password mismatch" in line for line in lines)
    failed = await threads.deferToThread(postfix.wait_for_log, r"SASL PLAIN authentication failed")
    assert failed and "unknown[127.0.0.1]" in failed


@pytest_twisted.ensureDeferred
async def test_postfix_cram_md5_runs_a_challenge_through_mailstack(postfix_with_mailstack_auth):
    """Postfix offers CRAM-MD5 from mailstack's list and relays its challenge; a {PLAIN} user passes, others fail."""
    postfix = postfix_with_mailstack_auth
    status, out = await threads.deferToThread(_swaks, postfix.port, "--auth", "CRAM-MD5",
                                              "--auth-user", CRAM_USER, "--auth-password", PASSWORD)
    assert "250-AUTH PLAIN LOGIN CRAM-MD5" in out
    assert status == 0 and "235 2.7.0 Authentication successful" in out, out
    # joe's password is a SHA512-CRYPT hash: CRAM-MD5 cannot serve him, whatever password he gives.
    status, out = await threads.deferToThread(_swaks, postfix.port, "--auth", "CRAM-MD5",
                                              "--auth-user", USER, "--auth-password", PASSWORD)
    assert status != 0 and "535 5.7.8 Error: authentication failed" in out


@pytest_twisted.ensureDeferred
async def test_postfix_reaches_the_auth_service_over_tcp(postfix_with_mailstack_auth):
    """smtpd_sasl_path = inet:127.0.0.1:PORT works against a `tcp:` auth service line."""
    postfix = postfix_with_mailstack_auth
    status, out = await threads.deferToThread(_swaks, postfix.inet_port, "--auth", "PLAIN",
                                              "--auth-user", USER, "--auth-password", PASSWORD)
    assert status == 0 and "235 2.7.0 Authentication successful" in out, out


def _starttls_login(port, user, password):
    """STARTTLS then AUTH PLAIN with smtplib (swaks here has no TLS); return the AUTH reply code."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
        client.starttls(context=context)
        client.ehlo()
        code, _ = client.auth("PLAIN", lambda challenge=None: "\0%s\0%s" % (user, password),
                              initial_response_ok=True)
        return code


@pytest_twisted.ensureDeferred
async def test_postfix_marks_tls_sessions_secured(postfix_with_mailstack_auth):
    """After STARTTLS Postfix sends `secured`; mailstack's log line for the login says TLS."""
    postfix = postfix_with_mailstack_auth
    with captured_log() as lines:
        code = await threads.deferToThread(_starttls_login, postfix.port, USER, PASSWORD)
    assert code == 235
    logins = [line for line in lines if "authenticated, method=PLAIN" in line]
    assert len(logins) == 1 and logins[0].endswith(", TLS") and USER in logins[0]


class _Twistd:
    """``twistd -n mailstack`` in a subprocess; its output is collected by a thread."""

    def __init__(self, config_dir):
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self.proc = subprocess.Popen([twistd, "-n", "--pidfile=", "mailstack", "--config", str(config_dir)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=subprocess_env())
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self._reader.join(timeout=5)
        self.proc.stdout.close()


def test_twistd_auth_service_serves_postfix(postfix_with_mailstack_auth, tmp_path):
    """`twistd -n mailstack` with an `auth` line in master.cf serves Postfix; the login shows in its maillog output."""
    postfix = postfix_with_mailstack_auth
    config_dir = tmp_path / "etc"
    shutil.copytree(postfix.mailstack_config, config_dir)
    (config_dir / "master.cf").write_text("auth unix:%s:mode=0666 auth\n" % postfix.private_path("auth-twistd"))
    daemon = _Twistd(config_dir)
    try:
        assert daemon.wait_for("daemon started"), "\n".join(daemon.lines)
        status, out = _swaks(postfix.twistd_port, "--auth", "LOGIN", "--auth-user", USER, "--auth-password", PASSWORD)
        assert status == 0 and "235 2.7.0 Authentication successful" in out, out + "\n".join(daemon.lines)
        line = daemon.wait_for("authenticated, method=LOGIN")
    finally:
        daemon.stop()
    assert line and re.search(r" mailstack/auth\[\d+\]: smtp\(%s,127\.0\.0\.1,<\d+\.\d+>\): authenticated, "
                              r"method=LOGIN, lip=127\.0\.0\.1$" % re.escape(USER), line), line
    assert not any("Traceback" in text for text in daemon.lines)
