"""Failure delay: grows per client address, leaves other addresses at full speed (injected clock)."""

import pytest_twisted
from twisted.internet import defer, task

from mailstack.auth.delay import FailureDelay
from mailstack.auth.service import AuthRequest
from tests.auth.helpers import service, write_config


def test_delay_doubles_up_to_the_maximum():
    """Each failure from one address doubles the next delay, capped at the maximum."""
    clock = task.Clock()
    delay = FailureDelay(clock, base=2, maximum=30, reset=600)
    assert [delay.record_failure("192.0.2.1") for _ in range(6)] == [2, 4, 8, 16, 30, 30]
    assert delay.next_delay("192.0.2.9") == 2


def test_delay_resets_after_quiet_period():
    """An address without failures for the reset period starts over at the base delay."""
    clock = task.Clock()
    delay = FailureDelay(clock, base=1, maximum=60, reset=600)
    for _ in range(3):
        delay.record_failure("192.0.2.1")
    assert delay.next_delay("192.0.2.1") == 8
    clock.advance(599)
    assert delay.next_delay("192.0.2.1") == 8
    clock.advance(1)
    assert delay.next_delay("192.0.2.1") == 1
    assert delay.record_failure("192.0.2.1") == 1


def test_zero_base_disables_delays():
    """auth_failure_delay = 0 means failures are answered at once."""
    delay = FailureDelay(task.Clock(), base=0, maximum=30, reset=600)
    assert [delay.record_failure("a") for _ in range(3)] == [0, 0, 0]


@pytest_twisted.ensureDeferred
async def test_brute_force_slows_one_address_not_another(tmp_path):
    """Failures from an attacker wait 1, 2, 4, 8 s while another address logs in without waiting."""
    config = write_config(tmp_path, "auth_failure_delay = 1s\nauth_failure_delay_max = 8s\n"
                                    "auth_mechanisms = plain\n", "joe@example.com:{PLAIN}secret::::::\n")
    clock = task.Clock()
    auth = service(config, clock)
    attacker = AuthRequest("imap", "198.51.100.7", secure=True)
    honest = AuthRequest("imap", "192.0.2.1", secure=True)
    waited = []
    for _ in range(5):
        pending = defer.ensureDeferred(auth.verify_plain("joe@example.com", "guess", attacker))
        assert not pending.called  # the failure is held back
        # Meanwhile the honest client is answered at once: no clock movement needed.
        ok = defer.ensureDeferred(auth.verify_plain("joe@example.com", "secret", honest))
        assert ok.called and ok.result.kind == "success"
        start = clock.seconds()
        while not pending.called:
            clock.advance(0.5)
        waited.append(clock.seconds() - start)
        step = await pending
        assert step.kind == "failure"
    assert waited == [1, 2, 4, 8, 8]


@pytest_twisted.ensureDeferred
async def test_sasl_failures_are_delayed_and_temporary_ones_are_not(tmp_path):
    """A failed SASL conversation is delayed; an internal failure (missing passwd-file) is answered at once."""
    config = write_config(tmp_path, "auth_failure_delay = 2s\n", "joe@example.com:{PLAIN}secret::::::\n")
    clock = task.Clock()
    auth = service(config, clock)
    request = AuthRequest("smtp", "198.51.100.7", secure=True)
    session = auth.start("PLAIN", request)
    pending = defer.ensureDeferred(session.step(b"\0joe@example.com\0wrong"))
    assert not pending.called
    clock.advance(2)
    assert pending.called and pending.result.kind == "failure"
    (tmp_path / "passwd").unlink()
    failed = defer.ensureDeferred(auth.verify_plain("joe@example.com", "secret", request))
    assert failed.called and failed.result.temporary
