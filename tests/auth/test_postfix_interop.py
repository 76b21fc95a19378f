"""A real Postfix authenticates SMTP clients through mailstack's Dovecot auth socket.

Postfix (``smtpd_sasl_type = dovecot``) runs on 127.0.0.1 from a temporary
directory (:mod:`tests.interop.postfix`); mailstack's ``auth`` service runs
in this process with the real :class:`~mailstack.auth.service.AuthService`
over the passwd-file written by ``mailstack init``; ``swaks`` is the SMTP
client.  Skipped only when Postfix (or swaks) is not installed.
"""

import shutil
import subprocess

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from mailstack import app
from mailstack.auth.schemes import registry as schemes
from tests.auth.helpers import captured_log
from tests.interop.postfix import postfix_factory  # noqa: F401 (pytest fixture)

USER = "joe@example.test"
PASSWORD = "correct horse"


def _swaks(port, *args):
    """Run swaks against 127.0.0.1:port up to AUTH; return (status, transcript)."""
    result = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, "--quit-after", "AUTH",
                             "--timeout", "15"] + list(args), capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture
def postfix_with_mailstack_auth(config_dir, postfix_factory):  # noqa: F811 (fixture argument)
    """A started Postfix whose smtpd asks mailstack's auth service (running in-process) over private/auth."""
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed (Debian package 'swaks'; .ci/run installs it)")
    postfix = postfix_factory(main_cf={
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": "private/auth",
    })
    postfix.check()
    with open(config_dir / "passwd", "a") as handle:
        handle.write("%s:%s:1000:1000::/home/joe::\n" % (USER, schemes.generate("SHA512-CRYPT", PASSWORD)))
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("auth_mechanisms = plain login cram-md5\nauth_failure_delay = 0.5s\n")
    (config_dir / "master.cf").write_text("auth unix:%s:mode=0666 auth\n" % postfix.private_path("auth"))
    root = app.make_service(str(config_dir), reactor=reactor)
    root.privilegedStartService()
    root.startService()
    postfix.start()
    yield postfix
    postfix.stop()
    pytest_twisted.blockon(root.stopService())


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
async def test_postfix_sees_only_mechanisms_mailstack_offers(postfix_with_mailstack_auth):
    """Postfix advertises exactly mailstack's auth_mechanisms minus those the passdb cannot serve."""
    postfix = postfix_with_mailstack_auth
    # CRAM-MD5 needs {CRAM-MD5} or plaintext passwords, which passwd-file can give, so it is offered;
    # an unknown user fails for it like for the others.
    status, out = await threads.deferToThread(_swaks, postfix.port, "--auth", "CRAM-MD5",
                                              "--auth-user", "nobody@example.test", "--auth-password", "x")
    assert "250-AUTH PLAIN LOGIN CRAM-MD5" in out
    assert status != 0 and "535 5.7.8 Error: authentication failed" in out
