"""Change notification: in-process changes at once, other processes via inotify or polling."""

import os
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from mailstack.store import maildir
from mailstack.store.notify import FolderListener
from mailstack.store.store import MailStore
from tests.conftest import subprocess_env


class Recorder(FolderListener):
    """Collects notifications and fires a Deferred when a condition holds."""

    def __init__(self):
        self.added, self.expunged, self.flagged = [], [], []
        self._waiters = []

    def messages_added(self, folder, messages):
        self.added.extend(m.uid for m in messages)
        self._check()

    def messages_expunged(self, folder, uids):
        self.expunged.extend(uids)
        self._check()

    def flags_changed(self, folder, messages):
        self.flagged.extend((m.uid, m.flags) for m in messages)
        self._check()

    def wait(self, predicate, timeout=5.0):
        d = defer.Deferred()
        self._waiters.append((predicate, d))
        self._check()
        return d.addTimeout(timeout, reactor)

    def _check(self):
        for entry in list(self._waiters):
            if entry[0](self):
                self._waiters.remove(entry)
                entry[1].callback(self)


@pytest.fixture
def live_store():
    """A store on the running reactor with inotify."""
    store = MailStore(reactor, hostname="mx", fsync=False)
    yield store
    store.close()


async def _open(store, tmp_path, listener):
    mb = store.mailbox("alice", str(tmp_path))
    await store.run(mb.ensure)
    inbox = mb.folder()
    inbox.add_listener(listener)
    await inbox.watch.idle()
    return mb, inbox


@pytest_twisted.ensureDeferred
async def test_in_process_changes_notify_at_once(live_store, tmp_path):
    """Delivery, flag changes and expunges in this process reach listeners before their Deferred fires."""
    listener = Recorder()
    mb, inbox = await _open(live_store, tmp_path, listener)
    message = await mb.deliver_async(b"hello\n")
    assert listener.added == [message.uid]
    await live_store.run(inbox.store_flags, [message.uid], {"\\Seen"}, "add")
    assert listener.flagged == [(message.uid, frozenset({"\\Seen"}))]
    await live_store.run(inbox.expunge, [message.uid])
    assert listener.expunged == [message.uid]
    inbox.remove_listener(listener)
    assert not inbox.watch.running


@pytest_twisted.ensureDeferred
async def test_other_process_changes_via_inotify(live_store, tmp_path):
    """A delivery, re-flag and delete by another process are seen through inotify within moments."""
    if live_store.inotify() is None:
        pytest.skip("inotify is not available here (the polling test covers this case)")
    listener = Recorder()
    mb, inbox = await _open(live_store, tmp_path, listener)
    script = ("import sys; from mailstack.store import maildir; "
              "print(maildir.deliver(sys.argv[1], b'x\\n', fsync=False).name)")
    started = time.monotonic()
    name = subprocess.run([sys.executable, "-c", script, inbox.path], env=subprocess_env(),
                          capture_output=True, text=True, check=True).stdout.strip()
    await listener.wait(lambda r: r.added)
    os.rename(os.path.join(inbox.path, "new", name), os.path.join(inbox.path, "cur", name + ":2,F"))
    await listener.wait(lambda r: r.flagged)
    assert listener.flagged == [(1, frozenset({"\\Flagged"}))]
    os.unlink(os.path.join(inbox.path, "cur", name + ":2,F"))
    await listener.wait(lambda r: r.expunged)
    assert listener.expunged == [1]
    assert time.monotonic() - started < 5


@pytest_twisted.ensureDeferred
async def test_polling_fallback_with_clock(tmp_path):
    """Without inotify, a poll every mailbox_idle_check_interval finds another process's delivery."""
    clock = task.Clock()
    store = MailStore(reactor, hostname="mx", fsync=False, use_inotify=False, poll_interval=30, clock=clock)
    listener = Recorder()
    mb, inbox = await _open(store, tmp_path, listener)
    maildir.deliver(inbox.path, b"from elsewhere\n", fsync=False)
    clock.advance(29)
    await store.run(lambda: None)
    assert listener.added == []
    clock.advance(1)
    await listener.wait(lambda r: r.added == [1])
    store.close()


@pytest_twisted.ensureDeferred
async def test_ten_thousand_listeners_share_one_watch(live_store, tmp_path):
    """10,000 listeners on one folder cost one watch pair and each hears of a delivery once."""
    listeners = [Recorder() for _ in range(10000)]
    mb, inbox = await _open(live_store, tmp_path, listeners[0])
    for listener in listeners[1:]:
        inbox.add_listener(listener)
    notifier = live_store.inotify()
    assert notifier is None or len(notifier._watchpoints) == 2
    started = time.monotonic()
    message = await mb.deliver_async(b"to everyone\n")
    assert all(listener.added == [message.uid] for listener in listeners)
    assert time.monotonic() - started < 2
    for listener in listeners:
        inbox.remove_listener(listener)
    assert not inbox.watch.running and (notifier is None or len(notifier._watchpoints) == 0)


@pytest_twisted.ensureDeferred
async def test_poke_syncs_at_once_without_inotify(tmp_path):
    """A writer that bypasses the folder (a delivery agent) pokes the store and listeners hear at once."""
    store = MailStore(reactor, hostname="mx", fsync=False, use_inotify=False, poll_interval=0)
    listener = Recorder()
    mb, inbox = await _open(store, tmp_path, listener)
    await store.run(maildir.deliver, inbox.path, b"via the agent\n", fsync=False)
    store.poke(inbox.path)
    await listener.wait(lambda r: r.added == [1], timeout=2)
    store.close()
