"""Real servers on loopback for the SMTP agent: SMTP (Twisted's ESMTP), SMTP with AUTH (:class:`AuthPeer`, over
mailstack's AuthService) and DNS (twisted.names)."""

import base64

from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.mail import smtp
from twisted.names import dns, server
from twisted.names.common import ResolverBase
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from mailstack.auth.request import AuthRequest


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


class _AuthPeerProtocol(LineOnlyReceiver):
    """A small ESMTP server that offers AUTH through mailstack's AuthService and sends the SASL
    server-final data as a 334 challenge (RFC 4954 §4), as some providers do."""

    delimiter = b"\r\n"

    def __init__(self, factory):
        self.factory = factory
        self.session = None
        self.user = None
        self.mode = "command"
        self.data = []
        self._chain = defer.succeed(None)

    def connectionMade(self):
        self.sendLine(b"220 auth.test ESMTP")

    def lineReceived(self, line):
        self._chain.addCallback(lambda _: defer.ensureDeferred(self._handle(line.decode("utf-8", "replace"))))

    def _reply(self, text):
        self.sendLine(text.encode("utf-8"))

    async def _handle(self, line):
        if self.mode == "data":
            if line == ".":
                self.mode = "command"
                self.factory.received.append((self.user, "\n".join(self.data)))
                return self._reply("250 2.0.0 Ok: queued")
            return self.data.append(line[1:] if line.startswith(".") else line)
        if self.mode in ("sasl", "final"):
            return await self._sasl(line)
        verb = line.split(" ", 1)[0].upper()
        self.factory.commands.append(verb)
        if verb == "EHLO":
            return self._reply("250-auth.test\r\n250 AUTH " + " ".join(self.factory.mechanisms))
        if verb == "AUTH":
            words = line.split()
            self.session = self.factory.auth.start(words[1], AuthRequest(service="smtp", remote_ip="127.0.0.1"))
            self.mode = "sasl"
            return await self._sasl(words[2] if len(words) > 2 else None)
        if verb in ("MAIL", "RCPT"):
            return self._reply("250 2.1.0 Ok" if self.user else "530 5.7.0 Authentication required")
        if verb == "DATA":
            self.mode, self.data = "data", []
            return self._reply("354 End data with <CR><LF>.<CR><LF>")
        if verb == "QUIT":
            self._reply("221 2.0.0 Bye")
            return self.transport.loseConnection()
        return self._reply("250 2.0.0 Ok")

    async def _sasl(self, text):
        if text == "*":
            self.mode = "command"
            return self._reply("501 5.7.0 Authentication aborted")
        if self.mode == "final":  # RFC 4954 §4: the client acknowledges the server-final data with an empty line
            self.mode = "command"
            if text != "":
                return self._reply("535 5.7.8 Error: authentication failed")
            self.user = self._pending
            return self._reply("235 2.7.0 Authentication successful")
        response = None if text is None else (b"" if text == "=" else base64.b64decode(text))
        step = await self.session.step(response)
        if step.kind == "continue":
            return self._reply("334 " + base64.b64encode(step.challenge).decode("ascii"))
        if step.kind == "success":
            final = step.challenge
            if self.factory.tamper_final and final.startswith(b"v="):
                signature = bytearray(base64.b64decode(final[2:]))
                signature[0] ^= 1
                final = b"v=" + base64.b64encode(bytes(signature))
            self.mode, self._pending = "final", step.user
            return self._reply("334 " + base64.b64encode(final).decode("ascii"))
        self.mode = "command"
        return self._reply("535 5.7.8 Error: authentication failed")


class AuthPeer(Factory):
    """Accepts mail only after AUTH (``received``: (user, content)); ``commands`` lists the verbs seen.

    Args:
        auth: a :class:`~mailstack.auth.service.AuthService`.
        mechanisms: what EHLO advertises.
        tamper_final: send a wrong SCRAM server signature.
    """

    def __init__(self, auth, mechanisms=("SCRAM-SHA-256",), tamper_final=False):
        self.auth, self.mechanisms, self.tamper_final = auth, mechanisms, tamper_final
        self.received, self.commands = [], []
        self.noisy = False

    def buildProtocol(self, addr):
        return _AuthPeerProtocol(self)
