"""A real Postfix authenticates SMTP clients through mailstack's Dovecot auth socket.

Postfix (``smtpd_sasl_type = dovecot``) runs on 127.0.0.1 from a temporary
directory (:mod:`tests.interop.postfix`); mailstack's ``auth`` service runs
in this process with the real :class:`~mailstack.auth.service.AuthService`
over the passwd-file written by ``mailstack init``; ``swaks`` is the SMTP
client.  Skipped only when Postfix (or swaks) is not installed.
"""

import shutil
import smtplib
import ssl
import subprocess

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from mailstack import app
from mailstack.auth.schemes import registry as schemes
from tests.auth.helpers import captured_log
from tests.conftest import run_cli
from tests.interop.postfix import PostfixInstance, skip_reason

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
    postfix = PostfixInstance(main_cf={
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": "private/auth",
        # STARTTLS with the certificate mailstack init made (read by smtpd as root, before it drops privileges).
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": config_dir / "tls" / "server.pem",
        "smtpd_tls_key_file": config_dir / "tls" / "server.key",
    })
    try:
        postfix.check()
        with open(config_dir / "passwd", "a") as handle:
            handle.write("%s:%s:1000:1000::/home/joe::\n" % (USER, schemes.generate("SHA512-CRYPT", PASSWORD)))
            handle.write("%s:{PLAIN}%s:1001:1001::/home/ann::\n" % (CRAM_USER, PASSWORD))
        with open(config_dir / "main.cf", "a") as handle:
            handle.write("auth_mechanisms = plain login cram-md5\nauth_failure_delay = 0.2s\n")
        (config_dir / "master.cf").write_text("auth unix:%s:mode=0666 auth\n" % postfix.private_path("auth"))
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
