"""A tiny program for app tests: an echo listener built through listener_service."""

from twisted.internet import protocol

from mailstack import app


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


def make_service(ctx, entry, config):
    return app.listener_service(ctx, entry, config, protocol.Factory.forProtocol(Echo))
