# -*- test-case-name: tests.test_app -*-
"""Server TLS contexts from PEM files (pyOpenSSL, keys and certificates loaded with cryptography), shared by every protocol.

A certificate file may hold the server certificate followed by its chain;
the key file may be the same file.  ``server_options`` returns a Twisted
``CertificateOptions`` usable both for implicit TLS listeners (``ssl:``
endpoints) and for STARTTLS/STLS upgrades.
"""

import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import ssl
from twisted.internet.ssl import TLSVersion

_PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.S)

_VERSIONS = {
    "tlsv1": TLSVersion.TLSv1_0,
    "tlsv1.1": TLSVersion.TLSv1_1,
    "tlsv1.2": TLSVersion.TLSv1_2,
    "tlsv1.3": TLSVersion.TLSv1_3,
}


class TLSConfigError(Exception):
    """The certificate or key cannot be used; the message says which file and why."""


def _read(path, what):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise TLSConfigError("cannot read %s %s: %s" % (what, path, err.strerror or err)) from None


def load_certificates(path):
    """Return the list of ``cryptography`` certificates in a PEM file, leaf first."""
    data = _read(path, "certificate file")
    blocks = _PEM_CERT_RE.findall(data)
    if not blocks:
        raise TLSConfigError("no PEM certificate in %s" % path)
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as err:
        raise TLSConfigError("bad certificate in %s: %s" % (path, err)) from None


def server_options(cert_file, key_file=None, min_protocol="tlsv1.2"):
    """Build server-side ``CertificateOptions``.

    Args:
        cert_file: PEM file with the certificate and optionally its chain.
        key_file: PEM private key; defaults to ``cert_file``.
        min_protocol: the lowest TLS version accepted (``tlsv1.2``...).

    Raises:
        TLSConfigError: naming the file and the reason.
    """
    certs = load_certificates(cert_file)
    key_path = key_file or cert_file
    try:
        key = serialization.load_pem_private_key(_read(key_path, "key file"), None)
    except (ValueError, TypeError) as err:
        raise TLSConfigError("bad private key in %s: %s" % (key_path, err)) from None
    try:
        options = ssl.CertificateOptions(
            privateKey=key, certificate=certs[0], extraCertChain=certs[1:],
            raiseMinimumTo=_VERSIONS[min_protocol])
        options.getContext()  # checks that key and certificate match
    except Exception as err:  # pyOpenSSL raises its own Error or ValueError
        raise TLSConfigError("cannot use %s with %s: %s" % (cert_file, key_path, err)) from None
    return options
