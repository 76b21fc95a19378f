"""The anvil counter: per-client connection counts shared by the master and its workers."""

import socket

import pytest_twisted
from twisted.internet import defer, protocol, reactor, task

from mailstack.master.anvil import AnvilClient, AnvilCounter, AnvilServer


def test_counts_per_service_and_address():
    """Counts go up and down per (service, address); services are counted apart."""
    counter = AnvilCounter()
    assert counter.connect("smtp", "192.0.2.1") == 1
    assert counter.connect("smtp", "192.0.2.1") == 2
    assert counter.connect("submission", "192.0.2.1") == 1
    counter.disconnect("smtp", "192.0.2.1")
    assert counter.count("smtp", "192.0.2.1") == 1
    counter.disconnect("smtp", "192.0.2.1")
    counter.disconnect("smtp", "192.0.2.1")  # one too many: ignored, never negative
    assert counter.count("smtp", "192.0.2.1") == 0


def test_dead_owner_releases_its_connections():
    """The connections a worker held are forgotten when it goes; the others stay counted."""
    counter = AnvilCounter()
    worker, master = object(), counter.bound("smtp")
    master.connect("192.0.2.1")
    counter.connect("smtp", "192.0.2.1", owner=worker)
    counter.connect("smtp", "192.0.2.1", owner=worker)
    counter.disconnect("smtp", "192.0.2.9", owner=worker)  # not held by it: ignored
    assert counter.count("smtp", "192.0.2.1") == 3
    counter.release(worker)
    assert counter.count("smtp", "192.0.2.1") == 1


def _pair(counter, on_lost=None):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server, client = AnvilServer(counter), AnvilClient(on_lost)
    try:
        reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, protocol.Factory.forProtocol(lambda: server))
        reactor.adoptStreamConnection(theirs.fileno(), socket.AF_UNIX, protocol.Factory.forProtocol(lambda: client))
    finally:
        ours.close()
        theirs.close()
    return server, client


@pytest_twisted.ensureDeferred
async def test_worker_asks_the_master_over_its_channel():
    """A worker's connect answers the count over every process; its disconnect lowers it."""
    counter = AnvilCounter()
    server, client = _pair(counter)
    try:
        counter.connect("smtp", "192.0.2.1")  # one in the master itself
        smtp = client.bound("smtp")
        assert await smtp.connect("192.0.2.1") == 2
        assert await smtp.connect("192.0.2.1") == 3
        assert await client.connect("pop3", "192.0.2.1") == 1
        smtp.disconnect("192.0.2.1")
        assert await smtp.connect("192.0.2.2") == 1  # answers come in order, after the disconnect
        assert counter.count("smtp", "192.0.2.1") == 2
    finally:
        client.transport.loseConnection()
        await task.deferLater(reactor, 0.05, lambda: None)


@pytest_twisted.ensureDeferred
async def test_closed_channel_releases_counts_and_tells_the_worker():
    """When the channel closes, the master forgets the worker's connections and the worker hears of it."""
    counter = AnvilCounter()
    lost = defer.Deferred()
    server, client = _pair(counter, on_lost=lambda: lost.callback(True))
    assert await client.connect("smtp", "192.0.2.1") == 1
    server.transport.loseConnection()
    assert await lost
    assert counter.count("smtp", "192.0.2.1") == 0
    assert await client.connect("smtp", "192.0.2.1") == 0  # the master is gone: nothing to count with
