"""Fixtures for SMTP server tests: a started server with two users, stopped after the test."""

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.conftest import run_cli
from tests.smtpd.harness import start_smtpd

USERS = ("x@example.test", "joe@example.test")
PASSWORD = "secret"


@pytest.fixture
def smtp_config_dir(config_dir):
    """init's configuration plus users x@ and joe@example.test (password "secret") in the passwd-file."""
    for user in USERS:
        status, out, err = run_cli("--config", config_dir, "user", "add", user, "--password", PASSWORD,
                                   "--scheme", "PLAIN")
        assert status == 0, err
    return config_dir


@pytest.fixture
def smtpd(smtp_config_dir):
    """An async factory: ``server = await smtpd(**overrides)``; every server is stopped afterwards."""
    started = []

    async def start(**overrides):
        server = await start_smtpd(smtp_config_dir, **overrides)
        started.append(server)
        return server

    yield start
    for server in started:
        pytest_twisted.blockon(defer.ensureDeferred(server.stop()))
