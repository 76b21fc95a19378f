"""A real SMTP server (Twisted's ESMTP) and a real DNS server (twisted.names) on loopback, for the SMTP agent."""

from twisted.internet import defer
from twisted.mail import smtp
from twisted.names import dns, server
from twisted.names.common import ResolverBase
from zope.interface import implementer


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, peer, recipient):
        self.peer, self.recipient, self.lines = peer, recipient, []

    def lineReceived(self, line):
        self.lines.append(line)

    def eomReceived(self):
        self.peer.received.append((self.peer.current_sender, str(self.recipient.dest), b"\n".join(self.lines)))
        return defer.succeed(None)

    def connectionLost(self):
        pass


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, peer):
        self.peer = peer

    def receivedHeader(self, helo, origin, recipients):
        return b"Received: from " + helo[0]

    def validateFrom(self, helo, origin):
        self.peer.current_sender = str(origin)
        return origin

    def validateTo(self, user):
        address = str(user.dest)
        if address in self.peer.reject:
            raise smtp.SMTPBadRcpt(user, 550, "5.1.1 <%s>: Recipient address rejected" % address)
        if address in self.peer.tempfail:
            raise smtp.SMTPBadRcpt(user, 450, "4.2.0 <%s>: try again later" % address)
        return lambda: _Message(self.peer, user)


class SMTPPeer(smtp.SMTPFactory):
    """Accepts mail (``received``: (sender, recipient, content)), rejecting ``reject`` and ``tempfail`` addresses."""

    protocol = smtp.ESMTP

    def __init__(self, tls_options=None):
        super().__init__()
        self.tls_options = tls_options
        self.protocols = []
        self.received = []
        self.reject = set()
        self.tempfail = set()
        self.current_sender = ""
        self.domain = "peer.example.net"
        self.noisy = False

    def buildProtocol(self, addr):
        proto = super().buildProtocol(addr)
        proto.delivery = _Delivery(self)
        proto.ctx = self.tls_options
        self.protocols.append(proto)
        return proto


class ZoneResolver(ResolverBase):
    """Answer MX and A queries from dicts: ``mx = {domain: [(pref, host)]}``, ``a = {host: ip}``."""

    def __init__(self, mx, a):
        super().__init__()
        self.mx, self.a = mx, a

    def _lookup(self, name, cls, type, timeout):
        name = name.decode() if isinstance(name, bytes) else name
        answers = []
        if type == dns.MX and name in self.mx:
            answers = [dns.RRHeader(name, dns.MX, payload=dns.Record_MX(pref, host.encode()), auth=True)
                       for pref, host in self.mx[name]]
        elif type == dns.A and name in self.a:
            answers = [dns.RRHeader(name, dns.A, payload=dns.Record_A(self.a[name]), auth=True)]
        elif name not in self.mx and name not in self.a:
            return defer.fail(dns.AuthoritativeDomainError(name))
        return defer.succeed((answers, [], []))


def listen_dns(reactor, mx, a):
    """Serve ``mx``/``a`` on 127.0.0.1 UDP; return the listening port."""
    factory = server.DNSServerFactory(authorities=[ZoneResolver(mx, a)])
    factory.noisy = False
    protocol = dns.DNSDatagramProtocol(factory)
    protocol.noisy = False
    return reactor.listenUDP(0, protocol, interface="127.0.0.1")


async def deliver(tmp_path, settings, recipients, body=b"Subject: hi\n\nbody\n", **agent_args):
    """Queue one message and run the queue manager with a real SMTP agent until it settles.

    ``agent_args`` go to :class:`~mailstack.agents.smtp.SMTPAgent`; a table-list
    parameter named there as a string (``sasl_password_maps="smtp_sasl_password_maps"``)
    is opened from the configuration.  Returns ``(harness, queue_id)``.
    """
    from twisted.internet import reactor

    from mailstack.agents.smtp import SMTPAgent
    from mailstack.tables.registry import Tables
    from tests.queue.harness import Harness
    h = Harness(tmp_path, settings)
    tables = Tables(reactor, str(tmp_path))
    for key, value in agent_args.items():
        if isinstance(value, str):
            agent_args[key] = tables.maps(h.config[value], value) if h.config[value] else None
    h.agents["smtp"] = SMTPAgent(h.config, reactor, **agent_args)
    h.qmgr.start()
    try:
        queue_id = await h.submit("alice@mail.example.test", recipients, body)
        await h.settle()
    finally:
        await h.qmgr.stop()
        tables.close()
    return h, queue_id
