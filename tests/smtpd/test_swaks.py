"""Interop with swaks, a real SMTP client: pipelining, STARTTLS + AUTH on submission, refusals."""

import shutil
import subprocess

import pytest
import pytest_twisted

from tests.smtpd.conftest import PASSWORD
from tests.smtpd.harness import in_thread

pytestmark = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")


def _swaks_has_tls():
    return subprocess.run(["perl", "-MNet::SSLeay", "-e", "1"], capture_output=True).returncode == 0


def swaks(port, *args):
    return subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(port), "--helo", "swaks.example",
                           "--timeout", "10", *args], capture_output=True, text=True, timeout=30)


@pytest_twisted.ensureDeferred
async def test_swaks_pipelined_delivery(smtpd):
    """swaks --pipeline sends a message that is queued."""
    server = await smtpd()
    result = await in_thread(swaks, server.port, "--pipeline", "--from", "a@example.org", "--to", "x@example.test",
                             "--header", "Subject: swaks")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  250 2.0.0 Ok: queued as" in result.stdout
    [queued] = server.queued()
    assert b"Subject: swaks" in queued.read_content()


@pytest.mark.skipif(not _swaks_has_tls(), reason="swaks needs Net::SSLeay (libnet-ssleay-perl) for TLS")
@pytest_twisted.ensureDeferred
async def test_swaks_submission_starttls_auth(smtpd):
    """swaks with STARTTLS and AUTH PLAIN on a submission-style service relays for the user."""
    server = await smtpd(smtpd_tls_security_level="encrypt", smtpd_sasl_auth_enable="yes", smtpd_tls_auth_only="yes",
                         smtpd_relay_restrictions="permit_sasl_authenticated,reject", auth_failure_delay="0")
    result = await in_thread(swaks, server.port, "--tls", "--auth", "PLAIN", "--auth-user", "joe@example.test",
                             "--auth-password", PASSWORD, "--from", "joe@example.test", "--to", "far@remote.example")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  235 2.7.0 Authentication successful" in result.stdout
    [queued] = server.queued()
    assert queued.envelope.protocol == "ESMTPSA" and queued.envelope.sasl_username == "joe@example.test"


@pytest_twisted.ensureDeferred
async def test_swaks_bad_password_and_relay_refusal(smtpd):
    """swaks sees 535 5.7.8 for a wrong password, and 554 5.7.1 when relaying unauthenticated."""
    server = await smtpd(smtpd_sasl_auth_enable="yes", auth_failure_delay="0", mynetworks="192.0.2.0/24")
    result = await in_thread(swaks, server.port, "--auth", "LOGIN", "--auth-user", "joe@example.test",
                             "--auth-password", "wrong", "--from", "a@example.org", "--to", "x@example.test")
    assert "<** 535 5.7.8 Error: authentication failed: authentication failure" in result.stdout
    result = await in_thread(swaks, server.port, "--from", "a@example.org", "--to", "far@remote.example")
    assert "<** 554 5.7.1 <far@remote.example>: Relay access denied" in result.stdout
    assert server.queued() == []


@pytest_twisted.ensureDeferred
async def test_swaks_auth_login_on_loopback(smtpd):
    """On loopback (a secure connection for the auth layer) swaks AUTH LOGIN succeeds without TLS and may relay."""
    server = await smtpd(smtpd_sasl_auth_enable="yes", auth_failure_delay="0", mynetworks="192.0.2.0/24")
    result = await in_thread(swaks, server.port, "--auth", "LOGIN", "--auth-user", "joe@example.test",
                             "--auth-password", PASSWORD, "--from", "joe@example.test", "--to", "far@remote.example")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  235 2.7.0 Authentication successful" in result.stdout
    [queued] = server.queued()
    assert queued.envelope.protocol == "ESMTPA"
