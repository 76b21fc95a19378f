"""Fixtures: a queue manager with the real local and virtual agents over a temporary store."""

import types

import pytest
from twisted.internet import reactor

from mailstack.agents.local import LocalAgent, qualified_users
from mailstack.agents.mailbox import StoreMailboxes
from mailstack.agents.simple import DiscardAgent, ErrorAgent
from mailstack.agents.virtual import VirtualAgent
from mailstack.auth.service import AuthService
from mailstack.store.store import MailStore
from mailstack.tables.hash import parse_aliases, write_index
from mailstack.tables.registry import Tables
from tests.queue.harness import Harness, LogCapture


@pytest.fixture
def logs():
    """Maillog lines emitted during the test."""
    capture = LogCapture().start()
    yield capture
    capture.stop()


class DeliveryHarness(Harness):
    """Harness plus the local and virtual agents, a passwd-file and an aliases table."""

    def __init__(self, tmp_path, aliases="", extra="", accounts=None):
        (tmp_path / "passwd").write_text(
            "alice@example.test:{PLAIN}secret::::::\n"
            "bob@example.test:{PLAIN}secret::::::userdb_quota_rule=*:storage=1K\n"
            "carol@virtual.test:{PLAIN}secret::::::\n")
        (tmp_path / "aliases").write_text(aliases)
        write_index(str(tmp_path / "aliases.db"), parse_aliases(aliases, "aliases"))
        settings = ("alias_maps = hash:%(t)s/aliases\n"
                    "passdb = passwd-file:%(t)s/passwd\nuserdb = passwd-file:%(t)s/passwd\n"
                    "mail_location = maildir:%(t)s/mail/%%d/%%n/Maildir\n"
                    "virtual_mailbox_domains = virtual.test\n"
                    "default_transport = discard:remote\n" % {"t": tmp_path}) + extra
        super().__init__(tmp_path, settings, {"discard": DiscardAgent(), "error": ErrorAgent()})
        self.tmp = tmp_path
        self.tables = Tables(reactor, str(tmp_path))
        self.store = MailStore(reactor, self.config, use_inotify=False, poll_interval=0)
        self.auth = AuthService(self.config, reactor)
        mailboxes = StoreMailboxes(self.store)
        self.agents["local"] = LocalAgent(self.config, reactor, self.queue, mailboxes, self.resolver,
                                          self.tables.maps(self.config["alias_maps"], "alias_maps"),
                                          qualified_users(self.auth.lookup_user, "example.test"),
                                          accounts=accounts)
        self.agents["virtual"] = VirtualAgent(self.config, mailboxes, None, self.auth.lookup_user)

    def maildir(self, user, domain="example.test"):
        """Return the contents of the messages in a user's INBOX new/ (sorted)."""
        new = self.tmp / "mail" / domain / user / "Maildir" / "new"
        if not new.is_dir():
            return []
        return sorted(p.read_bytes() for p in new.iterdir())

    def close(self):
        self.store.close()
        self.tables.close()


@pytest.fixture
def delivery(tmp_path):
    """Build a DeliveryHarness: ``delivery(aliases_text, extra_main_cf, accounts)``."""
    made = []

    def make(aliases="", extra="", accounts=None):
        harness = DeliveryHarness(tmp_path, aliases, extra, accounts)
        made.append(harness)
        return harness
    yield make
    for harness in made:
        harness.close()


def fake_account(tmp_path, name):
    """A system-account record (pwd-like) with a home directory under tmp_path."""
    home = tmp_path / "home" / name
    home.mkdir(parents=True)
    return types.SimpleNamespace(pw_name=name, pw_dir=str(home))
