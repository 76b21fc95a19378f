"""The queue API contract: writing, committing and aborting queue files."""

import os

import pytest
import pytest_twisted
from twisted.internet import reactor

from mailstack.common.queue_id import is_queue_id, new_queue_id
from mailstack.queue import Envelope, MailQueue, QueueError, Recipient
from mailstack.queue import qfile


@pytest.fixture
def queue(tmp_path):
    """A MailQueue on a fresh directory, using the real reactor's threads."""
    return MailQueue(str(tmp_path / "queue"), reactor, hostname="mail.example.test")


def test_queue_ids_are_unique_and_well_formed():
    """Ten thousand ids made in a burst are distinct and have the documented shape."""
    ids = {new_queue_id() for _ in range(10000)}
    assert len(ids) == 10000
    assert all(is_queue_id(i) for i in ids)
    assert not is_queue_id("../etc/passwd")


@pytest_twisted.ensureDeferred
async def test_commit_makes_a_complete_file_in_incoming(queue):
    """commit() renames the file into incoming/ with content normalised to LF and the envelope."""
    woken = []
    queue.add_listener(lambda: woken.append(1))
    writer = queue.new_message()
    assert os.path.exists(queue.path("incoming", writer.queue_id + ".tmp"))
    writer.write(b"Subject: hi\r")
    writer.write(b"\nX: %41\r\n\r\nbody\r\n")
    env = Envelope("a@example.org", [Recipient("b@example.com", "B@example.com", "rfc822;B@example.com",
                                               ("SUCCESS", "FAILURE")), Recipient("c\td@example.com")],
                   client_name="mx.example.org", client_address="192.0.2.1", helo="mx", protocol="ESMTPSA",
                   sasl_username="alice", envid="E1", ret="HDRS", body_type="8BITMIME", smtputf8=True)
    queue_id = await writer.commit(env)
    assert queue_id == writer.queue_id
    assert woken == [1]
    assert queue.list("incoming") == [queue_id]
    assert writer.size == len(b"Subject: hi\r\nX: %41\r\n\r\nbody\r\n")
    qf = qfile.read(queue.path("incoming", queue_id))
    assert qf.read_content() == b"Subject: hi\nX: %41\n\nbody\n"
    assert qf.envelope == env
    assert env.arrival_time > 0
    assert [r.done for r in qf.recipients] == [False, False]


@pytest_twisted.ensureDeferred
async def test_done_recipients_are_marked_in_place(queue):
    """mark_done flips one recipient's record to D without touching the others."""
    writer = queue.new_message()
    writer.write(b"\n")
    queue_id = await writer.commit(Envelope("", [Recipient("x@a"), Recipient("y@a")]))
    path = queue.path("incoming", queue_id)
    qf = qfile.read(path)
    qfile.mark_done(path, [qf.recipients[1].offset])
    qfile.set_warning_time(path, qf, 1234567890)
    again = qfile.read(path)
    assert [r.done for r in again.recipients] == [False, True]
    assert again.warning_time == 1234567890
    assert again.envelope.sender == ""


def test_abort_removes_the_file(queue):
    """abort() leaves nothing behind."""
    writer = queue.new_message()
    writer.write(b"x" * 300000)
    writer.abort()
    assert os.listdir(queue.path("incoming")) == []


@pytest.mark.parametrize("fsync_kind", ["aio", "threads"])
@pytest_twisted.ensureDeferred
async def test_deferred_create_writes_the_file_only_at_commit(queue, fsync_kind):
    """new_message(create=False) makes no file until commit, then one complete file, with AIO or thread fsync."""
    from mailstack.util import aio
    if fsync_kind == "threads":
        queue._file_syncer = aio.ThreadSyncer(reactor)
    writer = queue.new_message(create=False)
    writer.write(b"Subject: lazy\r\n\r\nbody\r\n")
    assert os.listdir(queue.path("incoming")) == []
    queue_id = await writer.commit(Envelope("a@example.org", [Recipient("b@example.com")]))
    assert os.listdir(queue.path("incoming")) == [queue_id]
    qf = qfile.read(queue.path("incoming", queue_id))
    assert qf.read_content() == b"Subject: lazy\n\nbody\n"
    assert qf.envelope.recipients[0].address == "b@example.com"


@pytest_twisted.ensureDeferred
async def test_deferred_create_spills_a_large_message_to_disk(queue):
    """A message larger than one write chunk gets its file as soon as the chunk is full, and commits whole."""
    writer = queue.new_message(create=False)
    writer.write(b"x" * 100 + b"\r\n")
    assert os.listdir(queue.path("incoming")) == []
    writer.write(b"y" * 300000 + b"\r\n")
    assert os.listdir(queue.path("incoming")) == [writer.queue_id + ".tmp"]
    queue_id = await writer.commit(Envelope("", [Recipient("b@example.com")]))
    content = qfile.read(queue.path("incoming", queue_id)).read_content()
    assert content == b"x" * 100 + b"\n" + b"y" * 300000 + b"\n"


def test_abort_before_any_file_leaves_nothing(queue):
    """abort() of a writer that never needed its file is a no-op on disk."""
    writer = queue.new_message(create=False)
    writer.write(b"small\r\n")
    writer.abort()
    assert os.listdir(queue.path("incoming")) == []


def test_incomplete_file_is_corrupt(queue, tmp_path):
    """A file without its end record is reported as corrupt."""
    path = tmp_path / "bad"
    path.write_bytes(qfile.header(2) + b"x\nT 1\nS a\n")
    with pytest.raises(qfile.CorruptQueueFile):
        qfile.read(str(path))


@pytest_twisted.ensureDeferred
async def test_commit_failure_raises_queue_error_and_cleans_up(queue):
    """An I/O failure at commit raises QueueError and leaves no file."""
    writer = queue.new_message()
    writer.write(b"body\n")
    os.close(writer._fd)  # simulate the disk going away under the writer
    with pytest.raises(QueueError):
        await writer.commit(Envelope("a@b", [Recipient("c@d")]))
    assert os.listdir(queue.path("incoming")) == []


def test_directory_fsyncs_are_shared_by_concurrent_commits(queue, monkeypatch):
    """Twenty threads asking the queue for a directory fsync at once share a few fsyncs instead of queueing twenty."""
    import threading
    import time
    from mailstack.util import atomic
    calls = []

    def slow_fsync(path):
        calls.append(path)
        time.sleep(0.05)
    monkeypatch.setattr(atomic, "fsync_directory", slow_fsync)
    threads = [threading.Thread(target=queue.sync_directory, args=("active",)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in threads)
    assert 1 <= len(calls) <= 3 and set(calls) == {queue.path("active")}


def test_read_keeps_small_content_with_the_envelope(tmp_path):
    """qfile.read(keep_content=N) returns the content of a small message with its envelope, else reads it later."""
    path = str(tmp_path / "ABC123")
    content = b"Subject: hi\n\nbody\n"
    qfile.write_file(path, content, Envelope("a@b.example", [Recipient("c@d.example")]))
    kept = qfile.read(path, keep_content=1024)
    assert kept.content == content and kept.envelope.sender == "a@b.example"
    assert [r.recipient.address for r in kept.recipients] == ["c@d.example"]
    lazy = qfile.read(path, keep_content=4)
    assert lazy.content is None and lazy.read_content() == content
    assert qfile.read(path).recipients[0].offset == kept.recipients[0].offset


@pytest_twisted.ensureDeferred
async def test_commit_names_the_file_after_a_queue_id_collision(queue, monkeypatch):
    """When the id drawn first is taken at commit, the file gets the new id and commit() returns that one."""
    from mailstack.queue import store
    writer = queue.new_message(create=False)
    writer.write(b"Subject: x\r\n\r\nbody\r\n")
    open(queue.path("incoming", writer.queue_id + ".tmp"), "wb").close()   # someone else's file, same id
    taken = writer.queue_id
    ids = iter(["BBBBBBBBBBBBBBBBBB"])
    monkeypatch.setattr(store, "new_queue_id", lambda: next(ids))
    queue_id = await writer.commit(Envelope("a@example.org", [Recipient("b@example.com")]))
    assert queue_id == "BBBBBBBBBBBBBBBBBB" != taken
    assert queue.list("incoming") == [queue_id]
    assert os.path.exists(queue.path("incoming", taken + ".tmp"))   # the other file is untouched
