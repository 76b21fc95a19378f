"""Virtual delivery: users of virtual_mailbox_domains from the userdb and from virtual_mailbox_maps."""

import pytest_twisted
from twisted.internet import task

from mailstack.agents.virtual import VirtualAgent
from mailstack.tables.hash import write_index


@pytest_twisted.ensureDeferred
async def test_userdb_user_of_virtual_domain(delivery, logs):
    """A userdb user of a virtual mailbox domain gets the mail in its mail location; others bounce."""
    h = delivery()
    h.qmgr.start()
    await h.submit("s@remote.test", ["Carol@virtual.test", "nobody@virtual.test"])
    await h.settle()
    await h.qmgr.stop()
    [message] = h.maildir("carol", "virtual.test")
    assert message.startswith(b"Return-Path: <s@remote.test>\nDelivered-To: Carol@virtual.test\n")
    assert logs.matching("mailstack/virtual[1]")
    assert logs.matching("to=<Carol@virtual.test>, relay=virtual")[0].endswith("status=sent (delivered to maildir)")
    assert logs.matching('dsn=5.1.1, status=bounced (unknown user: "nobody@virtual.test")')


@pytest_twisted.ensureDeferred
async def test_virtual_mailbox_maps_paths(delivery, tmp_path):
    """virtual_mailbox_maps gives maildir paths under virtual_mailbox_base, with an @domain catch-all."""
    write_index(str(tmp_path / "vmailbox.db"), {"dan@virtual.test": "virtual.test/dan/",
                                                "@virtual.test": "virtual.test/catchall/"})
    h = delivery(extra="virtual_mailbox_maps = hash:%s/vmailbox\nvirtual_mailbox_base = %s/vmail\n"
                       % (tmp_path, tmp_path))
    h.agents["virtual"] = VirtualAgent(h.config, h.agents["local"].mailboxes,
                                       h.tables.maps(h.config["virtual_mailbox_maps"]), None)
    h.qmgr.start()
    await h.submit("s@remote.test", ["dan@virtual.test", "eve@virtual.test"])
    await h.settle()
    await h.qmgr.stop()
    assert len(list((tmp_path / "vmail" / "virtual.test" / "dan" / "new").iterdir())) == 1
    assert len(list((tmp_path / "vmail" / "virtual.test" / "catchall" / "new").iterdir())) == 1


@pytest_twisted.ensureDeferred
async def test_userdb_answers_are_cached_for_the_ttl(delivery):
    """A found user is looked up once per virtual_userdb_cache_ttl; an unknown one every time."""
    h = delivery(extra="virtual_userdb_cache_ttl = 30s\n")
    clock = task.Clock()
    asked = []

    async def users(name):
        asked.append(name)
        return await h.auth.lookup_user(name)
    h.agents["virtual"] = VirtualAgent(h.config, h.agents["local"].mailboxes, None, users, clock=clock)
    h.qmgr.start()
    await h.submit("s@remote.test", ["carol@virtual.test", "nobody@virtual.test"])
    await h.settle()
    await h.submit("s@remote.test", ["carol@virtual.test", "nobody@virtual.test"])
    await h.settle()
    assert asked.count("carol@virtual.test") == 1 and asked.count("nobody@virtual.test") == 2
    clock.advance(30)
    await h.submit("s@remote.test", ["carol@virtual.test"])
    await h.settle()
    await h.qmgr.stop()
    assert asked.count("carol@virtual.test") == 2
    assert len(h.maildir("carol", "virtual.test")) == 3
