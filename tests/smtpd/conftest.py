"""Fixtures for SMTP server tests: a started server, stopped after the test."""

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.smtpd.harness import start_smtpd


@pytest.fixture
def smtpd(config_dir):
    """An async factory: ``server = await smtpd(**overrides)``; every server is stopped afterwards."""
    started = []

    async def start(**overrides):
        server = await start_smtpd(config_dir, **overrides)
        started.append(server)
        return server

    yield start
    for server in started:
        pytest_twisted.blockon(defer.ensureDeferred(server.stop()))
