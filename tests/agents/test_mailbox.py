"""Maildir delivery through the store: batched thread jobs, per-message failures, vanished maildirs."""

import shutil

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from mailstack.agents.base import DeliveryError
from mailstack.agents.mailbox import StoreMailboxes
from mailstack.store.store import MailStore


class CountingStore(MailStore):
    """A real MailStore that counts its thread jobs."""

    jobs = 0

    def run(self, function, *args, **kwargs):
        self.jobs += 1
        return super().run(function, *args, **kwargs)


@pytest.fixture
def store():
    """A store over the real reactor, no watches."""
    made = CountingStore(reactor, hostname="mx.test", use_inotify=False, poll_interval=0)
    yield made
    made.close()


def _new(path):
    return sorted(p.read_bytes() for p in (path / "new").iterdir())


@pytest_twisted.ensureDeferred
async def test_concurrent_deliveries_share_thread_jobs(store, tmp_path):
    """Deliveries asked for while a job runs go together in the next one; each still lands in new/."""
    mailboxes = StoreMailboxes(store, jobs=1)
    root = tmp_path / "joe" / "Maildir"
    await defer.gatherResults([defer.ensureDeferred(mailboxes.deliver(str(root), "joe", b"Subject: %d\n\nhi\n" % i))
                               for i in range(10)])
    assert _new(root) == sorted(b"Subject: %d\n\nhi\n" % i for i in range(10))
    assert store.jobs == 2  # the first alone at once, the nine others together
    assert not list((root / "tmp").iterdir())
    assert (root / ".Sent" / "cur").is_dir()  # ensure() made the default folders


@pytest_twisted.ensureDeferred
async def test_a_big_message_does_not_share_its_batch(store, tmp_path):
    """Past batch_bytes a waiting message goes to the next job: a big one holds no small ones back."""
    mailboxes = StoreMailboxes(store, jobs=1, batch_size=32)
    mailboxes.batch_bytes = 1000
    root = tmp_path / "kim" / "Maildir"
    sizes = [10, 2000, 10, 10]
    await defer.gatherResults([defer.ensureDeferred(mailboxes.deliver(str(root), "kim", b"x" * n))
                               for n in sizes])
    assert sorted(len(m) for m in _new(root)) == sorted(sizes)
    assert store.jobs == 3  # [10] at once, then [2000] alone, then [10, 10]


@pytest_twisted.ensureDeferred
async def test_a_failure_in_a_batch_fails_only_its_message(store, tmp_path):
    """A message over its user's quota bounces while the others of the same batch are delivered."""
    mailboxes = StoreMailboxes(store, jobs=1)
    full, fine = tmp_path / "full" / "Maildir", tmp_path / "fine" / "Maildir"
    await mailboxes.deliver(str(fine), "fine", b"first\n")
    results = await defer.DeferredList([
        defer.ensureDeferred(mailboxes.deliver(str(full), "full", b"x" * 5000, quota_bytes=1000)),
        defer.ensureDeferred(mailboxes.deliver(str(fine), "fine", b"second\n")),
    ], consumeErrors=True)
    (ok_full, error), (ok_fine, _) = results
    assert not ok_full and error.check(DeliveryError)
    assert error.value.dsn == "5.2.2" and "quota exceeded" in error.value.text
    assert ok_fine and _new(fine) == [b"first\n", b"second\n"]
    assert not list((full / "new").iterdir()) and not list((full / "tmp").iterdir())


@pytest_twisted.ensureDeferred
async def test_maildir_removed_behind_the_agents_back_is_recreated(store, tmp_path):
    """A maildir deleted after a delivery (which the agent remembers as existing) is made again."""
    mailboxes = StoreMailboxes(store)
    root = tmp_path / "ann" / "Maildir"
    await mailboxes.deliver(str(root), "ann", b"one\n")
    shutil.rmtree(tmp_path / "ann")
    await mailboxes.deliver(str(root), "ann", b"two\n")
    assert _new(root) == [b"two\n"]


@pytest_twisted.ensureDeferred
async def test_unwritable_maildir_defers_with_a_resource_problem(store, tmp_path):
    """A file where the maildir should be is a temporary 4.3.0 failure flagged as a resource problem."""
    (tmp_path / "blocked").write_text("not a directory")
    with pytest.raises(DeliveryError) as caught:
        await StoreMailboxes(store).deliver(str(tmp_path / "blocked" / "Maildir"), "x", b"hi\n")
    assert caught.value.dsn == "4.3.0" and caught.value.problem == "resource"
