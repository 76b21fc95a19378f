"""fsync off the reactor thread: native AIO and the thread-pool fallback, with the same behaviour."""

import os

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from mailstack.util import aio


def _aio_or_skip(depth=aio.DEPTH):
    try:
        return aio.AioSyncer(reactor, depth=depth)
    except aio.AioUnavailable as err:
        pytest.skip("native AIO not available here: %s" % err)


@pytest.fixture(params=["aio", "threads"])
def syncer(request):
    """Each kind of syncer on the real reactor."""
    if request.param == "aio":
        instance = _aio_or_skip()
    else:
        instance = aio.ThreadSyncer(reactor)
    yield instance
    instance.close()


def _file(tmp_path, name="f", data=b"x" * 4096):
    fd = os.open(str(tmp_path / name), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, data)
    return fd


@pytest_twisted.ensureDeferred
async def test_fsync_of_a_written_file_completes(syncer, tmp_path):
    """fsync(fd) fires with None once the file is on disk; the fd stays usable until the caller closes it."""
    fd = _file(tmp_path)
    try:
        assert await syncer.fsync(fd) is None
        assert os.fstat(fd).st_size == 4096
    finally:
        os.close(fd)


@pytest_twisted.ensureDeferred
async def test_fsync_errors_arrive_as_oserror(syncer, tmp_path):
    """An fsync the kernel refuses (a pipe cannot be fsynced) fails the Deferred with OSError, not silently."""
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(OSError) as info:
            await syncer.fsync(write_end)
        assert info.value.errno in (22, 9)   # EINVAL (pipe), EBADF
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest_twisted.ensureDeferred
async def test_more_fsyncs_than_the_ring_holds_all_complete(tmp_path):
    """With 4 slots, 60 concurrent fsyncs queue up in order and every one completes."""
    syncer = _aio_or_skip(depth=4)
    fds = [_file(tmp_path, "f%d" % i, b"y" * 100) for i in range(60)]
    try:
        results = await defer.gatherResults([syncer.fsync(fd) for fd in fds])
        assert results == [None] * 60
        assert not syncer._inflight and not syncer._waiting
    finally:
        for fd in fds:
            os.close(fd)
        syncer.close()


@pytest_twisted.ensureDeferred
async def test_directory_sync_is_group_committed(syncer, tmp_path):
    """Twenty callers at once share at most two directory fsyncs, and each still gets one that started after it."""
    started = []
    real_fsync = syncer.fsync

    def counting(fd):
        started.append(fd)
        return real_fsync(fd)
    syncer.fsync = counting
    for i in range(20):
        (tmp_path / ("n%d" % i)).write_bytes(b"")
    await defer.gatherResults([syncer.sync_directory(str(tmp_path)) for _ in range(20)])
    assert 1 <= len(started) <= 2
    # A caller arriving while an fsync runs waits for the next one.
    first = syncer.sync_directory(str(tmp_path))
    second = syncer.sync_directory(str(tmp_path))
    assert not second.called
    await defer.gatherResults([first, second])
    assert len(started) in (3, 4)


@pytest_twisted.ensureDeferred
async def test_directory_sync_of_a_missing_directory_fails(syncer, tmp_path):
    """A directory that does not exist fails the waiter with OSError (ENOENT), and the next call works again."""
    with pytest.raises(OSError):
        await syncer.sync_directory(str(tmp_path / "missing"))
    (tmp_path / "missing").mkdir()
    await syncer.sync_directory(str(tmp_path / "missing"))


def test_file_syncer_is_one_per_process_and_can_be_forced_to_threads(monkeypatch):
    """file_syncer() returns one shared syncer; MAILSTACK_AIO=no gives the thread pool."""
    first = aio.file_syncer(reactor)
    assert aio.file_syncer(reactor) is first
    monkeypatch.setattr(aio, "_SYNCERS", {})
    monkeypatch.setenv("MAILSTACK_AIO", "no")
    forced = aio.file_syncer(reactor)
    assert forced.kind == "threads"
