"""The public/qmgr trigger: datagram wakeups of the queue manager from other processes."""

import os
import socket
import stat

import pytest_twisted
from twisted.internet import defer, reactor, task

from mailstack.queue import trigger
from mailstack.queue.store import MailQueue


def _sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


async def _wait(predicate, timeout=5.0):
    waited = 0.0
    while not predicate() and waited < timeout:
        await _sleep(0.01)
        waited += 0.01
    return predicate()


@pytest_twisted.ensureDeferred
async def test_pull_wakes_the_listener(tmp_path):
    """A pull from another queue object reaches the listener's wakeup; the socket has mode 0622."""
    woken = []
    port = trigger.listen(reactor, str(tmp_path), lambda: woken.append(1))
    try:
        path = trigger.trigger_path(str(tmp_path))
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert stat.S_IMODE(os.lstat(path).st_mode) == trigger.SOCKET_MODE
        trigger.QueueTrigger(reactor, path).pull()
        assert await _wait(lambda: woken)
    finally:
        await defer.maybeDeferred(trigger.unlink, port)
    assert not os.path.exists(path)


def test_pulls_coalesce_per_reactor_turn(tmp_path):
    """Several pulls in one reactor turn send one datagram; the next turn may send again."""
    path = str(tmp_path / "qmgr")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        receiver.setblocking(False)
        clock = task.Clock()
        pulls = trigger.QueueTrigger(clock, path)
        for _ in range(5):
            pulls.pull()
        assert pulls.sent == 1
        assert receiver.recv(16) == b"W"
        clock.advance(0)
        pulls.pull()
        assert pulls.sent == 2


def test_pull_without_listener_is_silent(tmp_path):
    """No queue manager listening: the pull neither raises nor blocks (the periodic scan is the fallback)."""
    pulls = trigger.QueueTrigger(None, str(tmp_path / "public" / "qmgr"))
    pulls.pull()
    assert pulls.sent == 0


@pytest_twisted.ensureDeferred
async def test_stale_socket_is_replaced(tmp_path):
    """A socket file left by a dead queue manager is removed and listened on again."""
    path = trigger.trigger_path(str(tmp_path))
    os.makedirs(os.path.dirname(path))
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(path)
    dead.close()
    woken = []
    port = trigger.listen(reactor, str(tmp_path), lambda: woken.append(1))
    try:
        assert port is not None
        trigger.QueueTrigger(None, path).pull()
        assert await _wait(lambda: woken)
    finally:
        await defer.maybeDeferred(trigger.unlink, port)


@pytest_twisted.ensureDeferred
async def test_live_listener_is_left_alone(tmp_path):
    """When another live queue manager listens on public/qmgr, listen() leaves it and returns None."""
    first = trigger.listen(reactor, str(tmp_path), lambda: None)
    try:
        assert trigger.listen(reactor, str(tmp_path), lambda: None) is None
        assert os.path.exists(trigger.trigger_path(str(tmp_path)))
    finally:
        await defer.maybeDeferred(trigger.unlink, first)


@pytest_twisted.ensureDeferred
async def test_notify_without_in_process_qmgr_pulls_the_trigger(tmp_path):
    """MailQueue.notify() in a process with no queue manager wakes the one listening on public/qmgr."""
    woken = []
    port = trigger.listen(reactor, str(tmp_path), lambda: woken.append(1))
    try:
        queue = MailQueue(str(tmp_path), reactor)
        queue.notify()
        queue.notify()
        assert await _wait(lambda: woken)
        await _sleep(0.05)
        assert len(woken) == 1  # coalesced within the turn
    finally:
        await defer.maybeDeferred(trigger.unlink, port)


def test_notify_with_in_process_qmgr_calls_it_directly(tmp_path):
    """With an in-process listener, notify() calls it and sends no datagram."""
    calls = []
    queue = MailQueue(str(tmp_path), task.Clock())
    queue.add_listener(lambda: calls.append(1))
    queue.notify()
    assert calls == [1]
    assert queue._trigger is None
