"""Every mechanism against every scheme: success where it can serve, the exact reason where not."""

import pytest
import pytest_twisted

from mailstack.auth.mechs import registry as mechs
from mailstack.auth.schemes import registry as schemes
from tests.auth.helpers import captured_log, run_sasl, service, write_config

PASSWORD = "s3cret pässword"
# Argon2 at Dovecot's cost is slow; the grid exercises it once per mechanism anyway.
SCHEMES = schemes.names()
MECHANISMS = mechs.names()


def _serves(mech, scheme):
    mechanism = mechs.lookup(mech)
    return mechanism.scheme is None or scheme in ("PLAIN", mechanism.scheme)


@pytest.fixture(scope="module")
def stored():
    """One stored password per scheme (generated once: some schemes are slow)."""
    return {name: schemes.generate(name, PASSWORD) for name in SCHEMES}


@pytest.fixture
def auth(tmp_path, stored):
    lines = "".join("u-%s@example.com:%s:1000:1000::::\n" % (name.lower(), value) for name, value in stored.items())
    config = write_config(tmp_path, "auth_mechanisms = %s\n" % " ".join(MECHANISMS), lines)
    return service(config)


GRID = [(m, s) for m in MECHANISMS for s in SCHEMES]


@pytest.mark.parametrize("mech,scheme", GRID, ids=["%s-%s" % pair for pair in GRID])
@pytest_twisted.ensureDeferred
async def test_mechanism_against_scheme(auth, mech, scheme):
    """The mechanism succeeds when it can serve the scheme, else fails and logs exactly why."""
    user = "u-%s@example.com" % scheme.lower()
    with captured_log() as log:
        step = await run_sasl(auth, mech, user, PASSWORD)
    if _serves(mech, scheme):
        assert step.kind == "success", step.reason
        assert step.user == user
        assert not log
    else:
        wanted = mechs.lookup(mech).scheme
        reason = "%s needs a %s or plaintext password; user has %s" % (mech, wanted, scheme)
        assert step.kind == "failure" and not step.temporary
        assert log == ["passwd-file(%s,192.0.2.1): %s" % (user, reason)]


@pytest.mark.parametrize("mech,scheme", [(m, s) for m in MECHANISMS for s in ("PLAIN", "SHA512-CRYPT", "SCRAM-SHA-256",
                                                                               "CRAM-MD5", "SCRAM-SHA-1")
                                         if _serves(m, s)])
@pytest_twisted.ensureDeferred
async def test_wrong_password_is_refused(auth, mech, scheme):
    """A wrong password fails with 'Password mismatch' for every servable pair."""
    user = "u-%s@example.com" % scheme.lower()
    with captured_log() as log:
        step = await run_sasl(auth, mech, user, "wrong")
    assert step.kind == "failure" and not step.temporary
    assert len(log) == 1 and log[0].endswith("(%s,192.0.2.1): Password mismatch" % user)


@pytest.mark.parametrize("mech", MECHANISMS)
@pytest_twisted.ensureDeferred
async def test_unknown_user(auth, mech):
    """An unknown user fails as 'unknown user', not as an internal failure."""
    with captured_log() as log:
        step = await run_sasl(auth, mech, "nobody@example.com", "x")
    assert step.kind == "failure" and not step.temporary
    assert log == ["passwd-file(nobody@example.com,192.0.2.1): unknown user"]
