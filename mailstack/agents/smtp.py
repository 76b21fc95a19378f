# -*- test-case-name: tests.agents.test_smtp -*-
"""The SMTP client delivery agent (Postfix smtp(8)): MX lookup, ESMTP, STARTTLS, per-recipient replies.

One request is one SMTP transaction: the message to every recipient of
the request, which the queue manager grouped by next hop.

**Next hop.**  ``domain`` or ``host``: MX lookup (RFC 5321 §5.1), the
hosts in preference order, the domain's own address when it has no MX;
``[host]`` or ``[192.0.2.1]``: no MX lookup; ``:port`` after either
chooses the port (default 25).  DNS runs through dnspython in the
reactor's thread pool (``smtp_dns_servers``, else ``/etc/resolv.conf``).
A name that does not exist bounces (``5.4.4``); a DNS failure defers
(``4.4.3``).

**Session.**  Greeting, ``EHLO`` (``HELO`` when EHLO is refused),
``STARTTLS`` per ``smtp_tls_security_level`` (``may``: when offered, not
verified; ``encrypt``: required; ``verify`` and ``secure``: required, and
the certificate must be trusted and match a name, see
:mod:`mailstack.agents.smtp_tls`), ``AUTH`` when
``smtp_sasl_auth_enable`` is set and ``smtp_sasl_password_maps`` has an
entry for the server (see :mod:`mailstack.agents.smtp_sasl`; a failed
login defers, ``SASL authentication failed; server host[ip] said: 535
...``), ``MAIL FROM`` with ``SIZE`` and
``BODY=8BITMIME`` when offered (and the DSN parameters ``RET``,
``ENVID``, ``NOTIFY``, ``ORCPT`` when the server offers ``DSN``, RFC 3461),
``RCPT TO`` per recipient (each reply
decides that recipient), ``DATA`` with CRLF line ends and dot-stuffing
(RFC 5321 §4.5.2), ``QUIT``.  A host that cannot be reached, or that
answers the greeting, EHLO or MAIL with 4xx, makes the agent try the next
MX host; when all fail the recipients are deferred with the last reason
(``connect to mx.example.com[192.0.2.1]:25: Connection refused``).  A 5xx
reply bounces (``host mx[ip] said: 550 ... (in reply to RCPT TO
command)``).  ``relay=`` in the log is ``host[ip]:port``.

**Generic mapping** (Postfix generic(5), ``smtp_generic_maps``): on the
way out, the envelope sender, each envelope recipient and the addresses in
From:, To:, Cc: and the other address headers are looked up as
``user@domain``, then ``user`` when the domain is local (``$myorigin``,
``$mydestination``, ``$inet_interfaces``), then ``@domain``; a result
replaces the address, and a result ``@domain`` keeps the user part.  An
address extension the key did not have is kept only when
``propagate_unmatched_extensions`` lists ``generic``.  The queue file is
not changed: a deferred message is mapped again at each attempt, and
``to=<...>`` in the log stays the address as it was queued.  A table that
cannot answer defers the whole request (``4.3.0``).

Parameters read: ``smtp_helo_name``, ``smtp_connect_timeout``,
``smtp_helo_timeout``, ``smtp_data_done_timeout``,
``smtp_tls_security_level``, ``smtp_dns_servers``, ``inet_protocols``,
``smtp_generic_maps``, ``recipient_delimiter``,
``propagate_unmatched_extensions``, ``smtp_tls_CAfile``,
``smtp_tls_verify_cert_match``, ``smtp_tls_secure_cert_match``,
``smtp_sasl_auth_enable``, ``smtp_sasl_password_maps``,
``smtp_sasl_mechanism_filter``, ``smtp_sasl_security_options``,
``smtp_sasl_tls_security_options``, ``smtp_sasl_auth_soft_bounce``.
"""

import base64
import binascii
import socket

from twisted.internet import defer, endpoints, error
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from mailstack.agents import smtp_sasl, smtp_tls
from mailstack.agents.base import DeliveryStatus
from mailstack.auth.mechs.client import ClientError, client_for
from mailstack.cleanup.headers import field_addresses, rewrite_address_fields
from mailstack.cleanup.rewrite import apply_match
from mailstack.config.maincf import ConfigError
from mailstack.tables.base import TableTemporaryError

PARAMS = ("smtp_helo_name", "smtp_connect_timeout", "smtp_helo_timeout", "smtp_data_done_timeout",
          "smtp_tls_security_level", "smtp_dns_servers", "inet_protocols", "smtp_generic_maps",
          "recipient_delimiter", "propagate_unmatched_extensions", "smtp_tls_CAfile",
          "smtp_tls_verify_cert_match", "smtp_tls_secure_cert_match", "smtp_sasl_auth_enable",
          "smtp_sasl_password_maps", "smtp_sasl_mechanism_filter", "smtp_sasl_security_options",
          "smtp_sasl_tls_security_options", "smtp_sasl_auth_soft_bounce")

log = Logger(namespace="mailstack.smtp")


class _Failure(Exception):
    """A failure that ends the session (or the attempt on one host)."""

    def __init__(self, dsn, text, remote="", try_next=False):
        super().__init__(text)
        self.dsn, self.text, self.remote, self.try_next = dsn, text, remote, try_next
        self.connected = False  # set once a session was under way: the log names the relay

    @property
    def temporary(self):
        return self.dsn.startswith("4")


def parse_nexthop(nexthop, default_port=25):
    """Split a next hop into (host, port, mx_lookup).

    ``[host]`` disables the MX lookup; a ``:port`` suffix sets the port.
    """
    host, port = nexthop.strip(), default_port
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1:]
        host = host[1:end]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        return host, port, False
    if host.count(":") == 1:
        name, _, number = host.partition(":")
        if number.isdigit():
            host, port = name, int(number)
    return host, port, True


def _is_ip(text):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except OSError:
            continue
    return False


class DNSLookup:
    """MX and address lookups with dnspython, in the reactor's thread pool.

    Args:
        reactor: runs the blocking queries in its thread pool.
        servers: ``["127.0.0.1:5353", ...]``; empty for ``/etc/resolv.conf``.
        ipv6: also ask for AAAA records.
    """

    def __init__(self, reactor, servers=(), ipv6=False):
        import dns.resolver
        self._reactor = reactor
        self._ipv6 = ipv6
        if servers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [s.rpartition(":")[0] if s.count(":") == 1 else s for s in servers]
            ports = [int(s.rpartition(":")[2]) for s in servers if s.count(":") == 1]
            if ports:
                resolver.port = ports[0]
        else:
            resolver = dns.resolver.Resolver()
        resolver.lifetime = 10.0
        self._resolver = resolver

    def _query(self, name, rdtype):
        """Return the answer's records, [] when the name has no such records.  Blocks.

        Raises:
            _Failure: 5.4.4 when the name does not exist, 4.4.3 when DNS fails.
        """
        import dns.exception
        import dns.resolver
        try:
            return list(self._resolver.resolve(name, rdtype, search=False))
        except dns.resolver.NXDOMAIN:
            raise _Failure("5.4.4", "Host or domain name not found. Name service error for name=%s type=%s: "
                           "Host not found" % (name, rdtype)) from None
        except dns.resolver.NoAnswer:
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as err:
            raise _Failure("4.4.3", "Host or domain name not found. Name service error for name=%s type=%s: "
                           "Host not found, try again (%s)" % (name, rdtype, err.__class__.__name__)) from None

    def _addresses(self, host):
        if _is_ip(host):
            return [host]
        found = [r.address for r in self._query(host, "A")]
        if self._ipv6:
            try:
                found += [r.address for r in self._query(host, "AAAA")]
            except _Failure:
                pass
        return found

    def _targets(self, host, mx):
        if not mx or _is_ip(host):
            addresses = self._addresses(host)
            if not addresses:
                raise _Failure("5.4.4", "Host or domain name not found. Name service error for name=%s type=A: "
                               "Host found but no data record of requested type" % host)
            return [(host, a) for a in addresses]
        records = sorted(self._query(host, "MX"), key=lambda r: r.preference)
        if not records:  # RFC 5321 §5.1: no MX, the domain itself is the implicit MX
            return self._targets(host, False)
        targets = []
        for record in records:
            name = record.exchange.to_text(omit_final_dot=True)
            if name in ("", "."):  # RFC 7505 null MX
                raise _Failure("5.1.10", "Domain %s does not accept mail (nullMX)" % host)
            try:
                targets.extend((name, a) for a in self._addresses(name))
            except _Failure:
                continue
        if not targets:
            raise _Failure("4.4.3", "Host or domain name not found. No address for the MX hosts of %s" % host)
        return targets

    def targets(self, host, mx):
        """Return a Deferred firing with ``[(hostname, ip), ...]`` to try in order."""
        from twisted.internet.threads import deferToThreadPool
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._targets, host, mx)


@implementer(IHandshakeListener)
class _ClientProtocol(LineOnlyReceiver):
    """Line transport with a queue of reply waiters; multi-line replies are joined."""

    delimiter = b"\r\n"
    MAX_LENGTH = 65536

    def __init__(self):
        self._lines = []
        self._replies = []
        self._waiters = []
        self.lost = defer.Deferred()
        self.connected_done = defer.Deferred()
        self.handshake = None

    def connectionMade(self):
        self.connected_done.callback(self)

    def lineReceived(self, line):
        text = line.decode("utf-8", "replace")
        self._lines.append(text)
        if len(text) < 4 or text[3] != "-":
            code = int(text[:3]) if text[:3].isdigit() else 0
            reply = (code, [t[4:] for t in self._lines])
            self._lines = []
            if self._waiters:
                self._waiters.pop(0).callback(reply)
            else:
                self._replies.append(reply)

    def start_tls(self, creator, reactor, timeout):
        """Start the TLS handshake; return a Deferred that fires when it completes."""
        self.handshake = defer.Deferred()
        self.handshake.addTimeout(timeout, reactor)
        self.transport.startTLS(creator)
        return self.handshake

    def handshakeCompleted(self):
        if self.handshake is not None and not self.handshake.called:
            self.handshake.callback(None)

    def connectionLost(self, reason=None):
        if self.handshake is not None and not self.handshake.called:
            self.handshake.errback(_Failure("4.7.5", "Cannot start TLS: handshake failure"))
        for waiter in self._waiters:
            waiter.errback(_Failure("4.4.2", "lost connection"))
        self._waiters = []
        if not self.lost.called:
            self.lost.callback(None)

    def reply(self, reactor, timeout):
        if self._replies:
            return defer.succeed(self._replies.pop(0))
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        waiter.addTimeout(timeout, reactor)
        return waiter

    def command(self, text):
        self.sendLine(text.encode("utf-8"))


def _said(host, ip, code, lines, command):
    return "host %s[%s] said: %d %s (in reply to %s command)" % (host, ip, code, " ".join(lines), command)


def _dsn_of(code, lines):
    first = lines[0].split(" ", 1)[0] if lines else ""
    if first[:1] in "245" and first.count(".") == 2:
        return first
    return "%d.0.0" % (code // 100)


def xtext(text):
    """Encode ``text`` as RFC 3461 §4 xtext (``+`` and ``=`` and non-printables as ``+HH``)."""
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else "".join("+%02X" % b for b in c.encode("utf-8"))
                   for c in text)


def wire_format(content):
    """Return LF content as CRLF lines with dot-stuffing (RFC 5321 §4.5.2), ending in CRLF."""
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


class SMTPAgent:
    """Deliver over SMTP to the next hop of a request.

    Args:
        config: the main.cf configuration.
        reactor: for connections, timers and the DNS thread pool.
        dns: a :class:`DNSLookup` (built from the configuration when None).
        name: the transport name used in logs (``smtp`` or ``relay``).
        generic_maps: the ``smtp_generic_maps`` tables (:class:`~mailstack.tables.maps.Maps`), or None.
        is_local: the local-domain test for ``user`` keys (:class:`~mailstack.tables.maps.LocalDomains`).
        sasl_password_maps: the ``smtp_sasl_password_maps`` tables, or None.

    Raises:
        ConfigError: ``smtp_sasl_auth_enable = yes`` without password tables, or an unknown
            SASL security option.
    """

    def __init__(self, config, reactor, dns=None, name="smtp", generic_maps=None, is_local=None,
                 sasl_password_maps=None):
        self.config = config
        self.reactor = reactor
        self.name = name
        self.dns = dns or DNSLookup(reactor, config["smtp_dns_servers"],
                                    config["inet_protocols"] in ("all", "ipv6"))
        self.generic_maps = generic_maps
        self.is_local = is_local
        self.tls = smtp_tls.ClientTLS(config["smtp_tls_CAfile"])
        self.sasl_password_maps = sasl_password_maps
        self.sasl_enabled = config["smtp_sasl_auth_enable"]
        if self.sasl_enabled and not sasl_password_maps:
            raise ConfigError("smtp_sasl_auth_enable = yes: specify a password table via the "
                              "smtp_sasl_password_maps configuration parameter")
        try:
            self.sasl_options = smtp_sasl.check_security_options(
                config["smtp_sasl_security_options"], "smtp_sasl_security_options")
            self.sasl_tls_options = smtp_sasl.check_security_options(
                config["smtp_sasl_tls_security_options"], "smtp_sasl_tls_security_options")
        except ValueError as err:
            raise ConfigError(str(err)) from None

    async def generic(self, address):
        """Return ``address`` mapped through ``smtp_generic_maps`` (itself when nothing matches).

        Raises:
            TableTemporaryError: a table could not answer.
        """
        if not address or not self.generic_maps:
            return address
        delimiters = self.config["recipient_delimiter"]
        match = await self.generic_maps.find_address(address, "virtual", delimiters, self.is_local)
        if match is None:
            return address
        return apply_match(match.value.split(",")[0].strip(), address, match.extension,
                           "generic" in self.config["propagate_unmatched_extensions"])

    async def _generic_content(self, content):
        """Map the addresses of the header fields of ``content`` (LF line ends); the body is untouched."""
        end = content.find(b"\n\n")
        block = content if end < 0 else content[:end + 1]
        mapped = {}
        for address, _ in field_addresses(block):
            if address not in mapped:
                mapped[address] = await self.generic(address)
        if all(new == old for old, new in mapped.items()):
            return content
        return rewrite_address_fields(block, lambda address, cls: mapped.get(address, address)) + content[len(block):]

    async def deliver(self, request):
        if self.generic_maps:
            try:
                sender = await self.generic(request.envelope.sender)
                addresses = {r.index: await self.generic(r.address) for r in request.recipients}
            except TableTemporaryError as err:
                log.warn("smtp_generic_maps lookup error: {err}", err=err)
                return self._all(request.recipients, _Failure("4.3.0", "smtp_generic_maps lookup failure"), "none")
        else:
            sender, addresses = request.envelope.sender, {r.index: r.address for r in request.recipients}
        return await self._deliver(request, sender, addresses)

    async def _deliver(self, request, sender, addresses):
        host, port, mx = parse_nexthop(request.nexthop)
        try:
            targets = await self.dns.targets(host, mx)
        except _Failure as err:
            return self._all(request.recipients, err, "none")
        last = _Failure("4.4.1", "no route to %s" % host)
        relay = "none"
        for name, ip in targets:
            relay = "%s[%s]:%d" % (name, ip, port)
            try:
                return await self._session(request, name, ip, port, relay, sender, addresses)
            except _Failure as err:
                last = err
                if not (err.try_next or err.temporary):
                    return self._all(request.recipients, err, relay)
        return self._all(request.recipients, last, relay if last.remote or last.connected else "none")

    def _all(self, recipients, failure, relay):
        action = "deferred" if failure.temporary else "bounced"
        return [DeliveryStatus(r.index, action, failure.dsn, failure.text, relay, failure.remote)
                for r in recipients]

    async def _connect(self, name, ip, port):
        cls = endpoints.TCP6ClientEndpoint if ":" in ip else endpoints.TCP4ClientEndpoint
        endpoint = cls(self.reactor, ip, port, timeout=self.config["smtp_connect_timeout"])
        try:
            return await endpoints.connectProtocol(endpoint, _ClientProtocol())
        except (error.ConnectError, error.TimeoutError, OSError) as err:
            reason = getattr(err, "osError", None) or err
            text = getattr(reason, "strerror", None) or str(err.__class__.__name__)
            if isinstance(err, error.ConnectionRefusedError):
                text = "Connection refused"
            elif isinstance(err, error.TimeoutError):
                text = "Connection timed out"
            raise _Failure("4.4.1", "connect to %s[%s]:%d: %s" % (name, ip, port, text), try_next=True) from None

    async def _expect(self, proto, name, ip, command, timeout=None, ok=(2,)):
        try:
            code, lines = await proto.reply(self.reactor, timeout or self.config["smtp_helo_timeout"])
        except defer.TimeoutError:
            raise _Failure("4.4.2", "conversation with %s[%s] timed out while %s" % (
                name, ip, "receiving the initial server greeting" if command == "greeting"
                else "sending " + command), try_next=command in ("greeting", "EHLO")) from None
        except _Failure as err:
            raise _Failure("4.4.2", "%s with %s[%s] while %s" % (
                err.text, name, ip, "receiving the initial server greeting" if command == "greeting"
                else "sending " + command), try_next=command in ("greeting", "EHLO")) from None
        if code // 100 not in ok:
            said = _said(name, ip, code, lines, command if command != "greeting" else "initial greeting")
            dsn = _dsn_of(code, lines)
            if code // 100 == 4 and dsn[0] != "4":
                dsn = "4" + dsn[1:]
            if code // 100 == 5 and dsn[0] != "5":
                dsn = "5" + dsn[1:]
            raise _Failure(dsn, said, remote="%d %s" % (code, " ".join(lines)),
                           try_next=code // 100 == 4 and command in ("greeting", "EHLO", "MAIL FROM"))
        return code, lines

    async def _hello(self, proto, name, ip):
        helo = self.config["smtp_helo_name"]
        proto.command("EHLO " + helo)
        try:
            _, lines = await self._expect(proto, name, ip, "EHLO")
            return {line.split(" ", 1)[0].upper(): line for line in lines[1:]}
        except _Failure as err:
            if not err.remote.startswith("5"):
                raise
        proto.command("HELO " + helo)
        await self._expect(proto, name, ip, "HELO")
        return {}

    async def _session(self, request, name, ip, port, relay, sender, addresses):
        proto = await self._connect(name, ip, port)
        try:
            return await self._transaction(proto, request, name, ip, relay, sender, addresses)
        except _Failure as err:
            err.connected = True
            raise
        finally:
            if proto.transport is not None and proto.transport.connected:
                try:
                    proto.command("QUIT")
                except Exception:
                    pass
                proto.transport.loseConnection()

    async def _starttls(self, proto, request, name, ip, relay, extensions):
        """STARTTLS per ``smtp_tls_security_level``; return the TLS session, or None for plaintext.

        Raises:
            _Failure: TLS required but not offered or unavailable (4.7.4, 4.7.5), a failed handshake
                or an unverified certificate at ``verify``/``secure`` (4.7.5).
        """
        level = self.config["smtp_tls_security_level"]
        if level not in ("may",) + smtp_tls.MANDATORY_LEVELS:
            return None
        if "STARTTLS" not in extensions:
            if level in smtp_tls.MANDATORY_LEVELS:
                raise _Failure("4.7.4", "TLS is required, but was not offered by host %s[%s]" % (name, ip))
            return None
        try:
            session = self.tls.session()
        except smtp_tls.TLSSetupError as err:
            log.warn("{err}", err=err)
            if level in smtp_tls.MANDATORY_LEVELS:
                raise _Failure("4.7.5", "TLS is required, but our TLS engine is unavailable") from None
            return None
        proto.command("STARTTLS")
        await self._expect(proto, name, ip, "STARTTLS")
        try:
            await proto.start_tls(session, self.reactor, self.config["smtp_helo_timeout"])
        except defer.TimeoutError:
            raise _Failure("4.7.5", "Cannot start TLS: handshake failure", try_next=True) from None
        except _Failure as err:
            raise _Failure(err.dsn, err.text, try_next=True) from None
        self._check_peer(session, level, name, request.nexthop, relay)
        return session

    def _check_peer(self, session, level, name, nexthop, relay):
        """Log the TLS outcome as Postfix does; at ``verify``/``secure`` refuse an unverified peer."""
        cert = session.certificate
        verify = level in smtp_tls.VERIFIED_LEVELS
        if cert is None:
            trust = "Anonymous"
        elif not session.trusted:
            trust = "Untrusted"
            if verify:
                log.info("server certificate verification failed for {relay}: {why}", relay=relay,
                         why=session.verify_error_text())
        elif verify:
            strategies = self.config["smtp_tls_secure_cert_match" if level == "secure"
                                     else "smtp_tls_verify_cert_match"]
            patterns = smtp_tls.match_patterns(strategies, name, parse_nexthop(nexthop)[0])
            names = smtp_tls.certificate_names(cert)
            if smtp_tls.matching_name(names, patterns) is not None:
                trust = "Verified"
            else:
                trust = "Trusted"
                log.info("server certificate verification failed for {relay}: name mismatch "
                         "(certificate names: {names}; wanted: {patterns})", relay=relay,
                         names=", ".join(names) or "none", patterns=", ".join(patterns))
        else:
            trust = "Trusted"
        log.info("{trust} TLS connection established to {relay}: {how}", trust=trust, relay=relay,
                 how=session.describe())
        if verify and trust != "Verified":
            raise _Failure("4.7.5", "Server certificate not verified", try_next=True)

    async def _login(self, proto, request, name, ip, relay, extensions, tls):
        """SASL login (``smtp_sasl_*``) when the server offers AUTH and a password is known.

        Raises:
            _Failure: the password table failed (4.3.0), no allowed mechanism (4.7.0), the
                server's data was bad (4.7.0) or the server refused the login (its reply;
                5xx becomes 4xx with ``smtp_sasl_auth_soft_bounce``).
        """
        offered = smtp_sasl.offered_mechanisms(extensions)
        if not offered:
            return
        usable = smtp_sasl.filter_mechanisms(offered, self.config["smtp_sasl_mechanism_filter"])
        if not usable:
            log.warn("{relay} offered no supported AUTH mechanisms: '{words}'", relay=relay,
                     words=" ".join(offered))
            return
        try:
            found = await smtp_sasl.find_password(self.sasl_password_maps, name, request.nexthop)
        except TableTemporaryError as err:
            log.warn("smtp_sasl_password_maps lookup error: {err}", err=err)
            raise _Failure("4.3.0", "Temporary lookup failure") from None
        if found is None:
            return
        options = self.sasl_tls_options if tls else self.sasl_options
        mechanism = smtp_sasl.choose_mechanism(usable, options)
        if mechanism is None:
            raise _Failure("4.7.0", "SASL authentication failed; cannot authenticate to server %s[%s]: "
                           "no mechanism available" % (name, ip), try_next=True)
        client = client_for(mechanism, *found)
        initial = client.start()
        if initial is None:
            proto.command("AUTH " + mechanism)
        else:
            proto.command("AUTH %s %s" % (mechanism, base64.b64encode(initial).decode("ascii") or "="))
        steps = 0
        while True:
            code, lines = await self._expect(proto, name, ip, "AUTH", ok=(2, 3, 4, 5))
            if code // 100 != 3:
                break
            steps += 1
            if steps > 100:
                raise _Failure("4.3.0", "SASL authentication failed; authentication protocol loop with "
                               "server %s[%s]" % (name, ip), try_next=True)
            try:
                challenge = base64.b64decode(lines[0].strip(), validate=True)
                if mechanism.startswith("SCRAM-") and steps == 2:
                    client.finish(challenge)  # RFC 4954 §4: the server-final data comes as a challenge
                    response = b""
                else:
                    response = client.respond(challenge)
            except (ClientError, binascii.Error, ValueError) as err:
                proto.command("*")
                raise _Failure("4.7.0", "SASL authentication failed; cannot authenticate to server %s[%s]: %s"
                               % (name, ip, err), try_next=True) from None
            proto.command(base64.b64encode(response).decode("ascii"))
        if code // 100 == 2:
            return
        text = "%d %s" % (code, " ".join(lines))
        dsn = _dsn_of(code, lines)
        if code // 100 == 5 and self.config["smtp_sasl_auth_soft_bounce"]:
            dsn = "4" + dsn[1:]
        elif dsn[0] != str(code // 100):
            dsn = str(code // 100) + dsn[1:]
        raise _Failure(dsn, "SASL authentication failed; server %s[%s] said: %s" % (name, ip, text),
                       remote=text, try_next=True)

    async def _transaction(self, proto, request, name, ip, relay, sender, addresses):
        await self._expect(proto, name, ip, "greeting")
        extensions = await self._hello(proto, name, ip)
        session = await self._starttls(proto, request, name, ip, relay, extensions)
        if session is not None:
            extensions = await self._hello(proto, name, ip)
        if self.sasl_enabled:
            await self._login(proto, request, name, ip, relay, extensions, session is not None)
        content = await request.read_content()
        if self.generic_maps:
            try:
                content = await self._generic_content(content)
            except TableTemporaryError as err:
                log.warn("smtp_generic_maps lookup error: {err}", err=err)
                raise _Failure("4.3.0", "smtp_generic_maps lookup failure") from None
        content = wire_format(content)
        mail = "MAIL FROM:<%s>" % sender
        if "SIZE" in extensions:
            mail += " SIZE=%d" % len(content)
        if request.envelope.body_type == "8BITMIME" and "8BITMIME" in extensions:
            mail += " BODY=8BITMIME"
        if request.envelope.smtputf8 and "SMTPUTF8" in extensions:
            mail += " SMTPUTF8"
        dsn_ok = "DSN" in extensions  # RFC 3461: pass the DSN parameters on
        if dsn_ok and request.envelope.ret:
            mail += " RET=" + request.envelope.ret
        if dsn_ok and request.envelope.envid:
            mail += " ENVID=" + xtext(request.envelope.envid)
        proto.command(mail)
        await self._expect(proto, name, ip, "MAIL FROM")
        statuses, accepted = [], []
        for rcpt in request.recipients:
            command = "RCPT TO:<%s>" % addresses[rcpt.index]
            if dsn_ok and rcpt.notify:
                command += " NOTIFY=" + ",".join(rcpt.notify)
            if dsn_ok and rcpt.orcpt:
                kind, _, address = rcpt.orcpt.partition(";")
                command += " ORCPT=%s;%s" % (kind, xtext(address))
            proto.command(command)
            try:
                await self._expect(proto, name, ip, "RCPT TO")
                accepted.append(rcpt)
            except _Failure as err:
                if err.dsn == "4.4.2":
                    raise
                action = "deferred" if err.temporary else "bounced"
                statuses.append(DeliveryStatus(rcpt.index, action, err.dsn, err.text, relay, err.remote))
        if not accepted:
            proto.command("RSET")
            return statuses
        proto.command("DATA")
        await self._expect(proto, name, ip, "DATA", ok=(3,))
        proto.transport.write(content + b".\r\n")
        try:
            code, lines = await self._expect(proto, name, ip, "end of DATA",
                                             timeout=self.config["smtp_data_done_timeout"])
        except _Failure as err:
            action = "deferred" if err.temporary else "bounced"
            return statuses + [DeliveryStatus(r.index, action, err.dsn, err.text, relay, err.remote)
                               for r in accepted]
        text = "%d %s" % (code, " ".join(lines))
        dsn = _dsn_of(code, lines)
        return statuses + [DeliveryStatus(r.index, "sent", dsn, text, relay, text) for r in accepted]
