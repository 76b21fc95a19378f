"""The auth cache: positive and negative TTLs, size bound, password changes (injected clock)."""

import os

import pytest_twisted
from twisted.internet import task

from mailstack.auth.cache import AuthCache
from tests.auth.helpers import REQUEST, service, write_config


def test_ttls_and_negative_entries():
    """Entries expire after their TTL; negative entries use the negative TTL."""
    clock = task.Clock()
    cache = AuthCache(clock, size=10000, ttl=60, negative_ttl=10)
    cache.put("joe", "entry")
    cache.put("ghost", None)
    assert cache.get("joe") == (True, "entry")
    assert cache.get("ghost") == (True, None)
    clock.advance(10)
    assert cache.get("ghost") == (False, None)
    assert cache.get("joe") == (True, "entry")
    clock.advance(50)
    assert cache.get("joe") == (False, None)


def test_size_bound_evicts_least_recently_used():
    """Past auth_cache_size bytes the least recently used entries go first."""
    cache = AuthCache(task.Clock(), size=300, ttl=60, negative_ttl=60)
    for name in ("a", "b", "c"):
        cache.put(name, name, size=100)
    cache.get("a")
    cache.put("d", "d", size=100)
    assert [cache.get(k)[0] for k in "abcd"] == [True, False, True, True]


def test_disabled_cache_keeps_nothing():
    """auth_cache_size = 0 (the default) disables the cache."""
    cache = AuthCache(task.Clock(), size=0, ttl=60, negative_ttl=60)
    cache.put("a", "x")
    assert cache.get("a") == (False, None) and len(cache) == 0


@pytest_twisted.ensureDeferred
async def test_service_cache_positive_negative_and_password_change(tmp_path):
    """Cached users survive a passdb outage until their TTL; unknown users stay unknown until the
    negative TTL; a changed password is picked up at once because a mismatch re-asks the passdb."""
    clock = task.Clock()
    config = write_config(tmp_path, "auth_cache_size = 1M\nauth_cache_ttl = 60s\nauth_cache_negative_ttl = 30s\n",
                          "joe:{PLAIN}one::::::\n")
    auth = service(config, clock)
    assert (await auth.verify_plain("joe", "one", REQUEST)).kind == "success"
    assert (await auth.verify_plain("ann", "x", REQUEST)).kind == "failure"
    # Password changed and ann added: joe's new password works at once, ann stays unknown for 30 s.
    (tmp_path / "passwd.new").write_text("joe:{PLAIN}two::::::\nann:{PLAIN}x::::::\n")
    os.replace(tmp_path / "passwd.new", tmp_path / "passwd")
    assert (await auth.verify_plain("joe", "two", REQUEST)).kind == "success"
    assert (await auth.verify_plain("ann", "x", REQUEST)).kind == "failure"
    clock.advance(30)
    assert (await auth.verify_plain("ann", "x", REQUEST)).kind == "success"
    # Within the TTL a cached user logs in even while the passdb is unreadable; after it, not.
    (tmp_path / "passwd").unlink()
    assert (await auth.verify_plain("joe", "two", REQUEST)).kind == "success"
    clock.advance(61)
    assert (await auth.verify_plain("joe", "two", REQUEST)).temporary
    assert auth.cache.hits > 0
