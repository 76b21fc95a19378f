# -*- test-case-name: tests.agents.test_smtp_tls -*-
"""The SMTP client's TLS policy (Postfix ``smtp_tls_security_level``): trust and name checks after STARTTLS.

Levels (Postfix's): ``none``/empty (no STARTTLS), ``may`` (STARTTLS when
offered, certificate not checked), ``encrypt`` (STARTTLS required, not
checked), ``verify`` (STARTTLS required; the certificate must chain to a
trusted CA and carry a name from ``smtp_tls_verify_cert_match``, default
``hostname``: the MX host name after an MX lookup, the relay host name
for ``[host]``), ``secure`` (the same, with ``smtp_tls_secure_cert_match``,
default ``nexthop, dot-nexthop``: the next-hop domain or one of its
sub-domains).

As in Postfix, the handshake always completes: OpenSSL's verification
result is recorded, not enforced, by a per-connection verify callback, and
the policy decides afterwards.  The outcome is logged the way Postfix's
``tls_client`` does (``Anonymous``, ``Untrusted``, ``Trusted`` or
``Verified TLS connection established to host[ip]:port: TLSv1.3 with
cipher ...``); a level that needs a verified peer and did not get one
fails the session with ``4.7.5 Server certificate not verified``.

Names are matched as Postfix's ``match_servername`` does: the DNS names of
the subject alternative name extension (the subject CN only when there is
none), case-insensitively; ``*.example.com`` matches one label; a pattern
starting with ``.`` matches any sub-domain.  Unlike Postfix, an IP literal
next hop also matches an IP address in the subject alternative names.

Trust anchors: ``smtp_tls_CAfile`` (a PEM bundle), or the system's default
store when it is empty.

Parameters read: ``smtp_tls_security_level``, ``smtp_tls_CAfile``,
``smtp_tls_verify_cert_match``, ``smtp_tls_secure_cert_match``.
"""

import ipaddress

from cryptography import x509
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

# Levels at which the certificate must chain to a trusted CA and match a name.
VERIFIED_LEVELS = ("verify", "secure")
# Levels at which a session without TLS is refused.
MANDATORY_LEVELS = ("encrypt", "verify", "secure")

# X509_V_ERR_* codes Postfix reports as "untrusted issuer", and texts for the usual others.
_UNTRUSTED_ISSUER = (2, 19, 20)
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    26: "unsupported certificate purpose",
}


class TLSSetupError(Exception):
    """The trust store cannot be loaded (``smtp_tls_CAfile`` unreadable or not PEM)."""


class ClientTLS:
    """The client TLS context of one agent; one :class:`TLSSession` per STARTTLS.

    Args:
        cafile: ``smtp_tls_CAfile``; empty for the system default trust store.
    """

    def __init__(self, cafile=""):
        self.cafile = cafile
        self._context = None

    def context(self):
        """Return the shared ``SSL.Context`` (built on first use).

        Raises:
            TLSSetupError: the CA file cannot be loaded.
        """
        if self._context is None:
            context = ssl.CertificateOptions().getContext()
            try:
                if self.cafile:
                    context.load_verify_locations(self.cafile.encode())
                else:
                    context.set_default_verify_paths()
            except SSL.Error as err:
                raise TLSSetupError("cannot load Certificate Authority data from %s: %s"
                                    % (self.cafile or "the default trust store", err)) from None
            self._context = context
        return self._context

    def session(self):
        """Return a new :class:`TLSSession` for ``transport.startTLS``."""
        return TLSSession(self.context())


@implementer(IOpenSSLClientConnectionCreator)
class TLSSession:
    """One client TLS connection: records the chain verification instead of enforcing it.

    Attributes:
        connection: the ``OpenSSL.SSL.Connection`` once created.
        error: ``(code, depth)`` of the first chain verification error (an ``X509_V_ERR_*``
            code and the position in the chain), or None.
    """

    def __init__(self, context):
        self._context = context
        self.connection = None
        self.error = None

    def clientConnectionForTLS(self, tls_protocol):
        connection = SSL.Connection(self._context, None)
        connection.set_verify(SSL.VERIFY_PEER, self._verify)
        self.connection = connection
        return connection

    def _verify(self, connection, cert, code, depth, ok):
        # Only plain values here: an exception in a verify callback fails the handshake.
        if not ok and self.error is None:
            self.error = (code, depth)
        return True  # decide after the handshake, as Postfix does

    @property
    def certificate(self):
        """The peer's certificate (``cryptography``), or None (anonymous)."""
        return self.connection.get_peer_certificate(as_cryptography=True) if self.connection else None

    @property
    def trusted(self):
        """The peer certificate chains to a trusted CA."""
        return self.certificate is not None and self.error is None

    def describe(self):
        """Return ``TLSv1.3 with cipher NAME (bits/bits bits)`` for the log."""
        conn = self.connection
        bits = conn.get_cipher_bits()
        return "%s with cipher %s (%s/%s bits)" % (conn.get_protocol_version_name(), conn.get_cipher_name(),
                                                   bits, bits)

    def verify_error_text(self):
        """Return Postfix's wording for the recorded chain error (empty when there is none)."""
        if self.error is None:
            return ""
        code, depth = self.error
        chain = self.connection.get_peer_cert_chain(as_cryptography=True) or []
        if code in _UNTRUSTED_ISSUER and depth < len(chain):
            return "untrusted issuer %s" % _oneline(chain[depth].issuer)
        return "num=%d:%s" % (code, _VERIFY_ERRORS.get(code, "certificate verification error"))


def _oneline(name):
    """Return a ``cryptography`` Name in OpenSSL's one-line form (``/O=Example/CN=Example CA``)."""
    return "".join("/%s=%s" % (a.rfc4514_attribute_name, a.value) for a in name)


def certificate_names(cert):
    """Return the names a certificate is valid for: SAN DNS names and IP addresses, else the subject CN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    names = []
    if san is not None:
        names = [n.lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    if not names:
        names = [a.value.lower() for a in cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)]
    return names


def _ip(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def match_patterns(strategies, hostname, nexthop):
    """Expand a ``smtp_tls_*_cert_match`` list into name patterns.

    ``hostname`` becomes the server's host name, ``nexthop`` the next-hop
    domain, ``dot-nexthop`` ``.`` plus the next-hop domain (any
    sub-domain); other words are literal names (``.domain`` for its
    sub-domains).
    """
    patterns = []
    for word in strategies:
        word = word.lower()
        if word == "hostname":
            patterns.append(hostname.lower())
        elif word == "nexthop":
            patterns.append(nexthop.lower())
        elif word == "dot-nexthop":
            patterns.append("." + nexthop.lower())
        else:
            patterns.append(word)
    return patterns


def matching_name(names, patterns):
    """Return the first certificate name that satisfies a pattern (Postfix ``match_servername``), or None."""
    for pattern in patterns:
        subdomains = pattern.startswith(".")
        domain = pattern.lstrip(".").rstrip(".")
        address = _ip(domain)
        for name in names:
            if address is not None:
                if not subdomains and _ip(name) == address:
                    return name
                continue
            if _ip(name) is not None:
                continue  # an IP address in the certificate only answers an IP literal
            if subdomains:
                if name.endswith("." + domain):
                    return name
            elif name == domain:
                return name
            elif name.startswith("*.") and "." in domain and domain.split(".", 1)[1] == name[2:]:
                return name
    return None
