"""Fixtures for store tests: a blocking store and a mailbox in a temporary directory."""

import pytest

from mailstack.store.store import MailStore


@pytest.fixture
def store():
    """A MailStore without a reactor (blocking use), fsync on as in production."""
    return MailStore(hostname="mx.example.test")


@pytest.fixture
def mailbox(store, tmp_path):
    """Alice's mailbox under tmp_path/home/Maildir, created."""
    return store.mailbox("alice@example.test", str(tmp_path / "home")).ensure()
