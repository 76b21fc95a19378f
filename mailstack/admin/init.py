# -*- test-case-name: tests.admin.test_init -*-
"""``mailstack init``: write a complete, working configuration directory.

Creates, in the ``--config`` directory:

- ``main.cf`` with the host and domain names, the queue, data and mail
  directories, TLS files and the auth databases;
- ``master.cf`` with every service (SMTP 25, submission 587, SMTPS 465,
  POP3 110, POP3S 995, IMAP 143, IMAPS 993, the queue manager); with
  ``--ports dev`` the unprivileged ports 2525, 5870, 4650, 1100, 9950, 1430
  and 9930 on loopback, for a demo or a developer's machine;
- an empty Dovecot-style ``passwd`` file, ``aliases`` (postmaster, abuse...)
  and an empty ``virtual`` table;
- ``tls/ca.pem``: a small local certificate authority, and
  ``tls/server.pem`` + ``tls/server.key``: a server certificate signed by
  it, whose subject alternative names hold the host name, ``localhost``,
  ``127.0.0.1`` and ``::1``.  Tell clients that verify certificates
  (mbsync, fetchmail, Thunderbird) to trust ``tls/ca.pem``;
- the queue directory (``queue/``), data directory and mail directory.

An existing main.cf is never overwritten unless ``--force`` is given.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailstack.config.maincf import ConfigError, default_hostname
from mailstack.util.atomic import replace_file

DESCRIPTION = __doc__.split("\n", 2)[2]

PORTS = {
    "standard": {"smtp": 25, "submission": 587, "smtps": 465, "pop3": 110,
                 "pop3s": 995, "imap": 143, "imaps": 993},
    "dev": {"smtp": 2525, "submission": 5870, "smtps": 4650, "pop3": 1100,
            "pop3s": 9950, "imap": 1430, "imaps": 9930},
}

QUEUE_SUBDIRS = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt", "defer", "bounce")

ALIASES = """\
# aliases(5): local aliases, "name: destination, ...".
# Run "mailstack newaliases" after editing.
postmaster: {root}
abuse: postmaster
hostmaster: postmaster
webmaster: postmaster
mailer-daemon: postmaster
"""

VIRTUAL = """\
# virtual(5): "address  destination, ..."; "@domain" is a catch-all.
# Run "mailstack postmap hash:{path}" after editing.
# RFC 5321 and 2142 role addresses of the mail domain, to the postmaster:
postmaster@{domain}  {postmaster}
abuse@{domain}       {postmaster}
"""

PASSWD = """\
# Dovecot passwd-file: user:{{SCHEME}}hash:uid:gid:gecos:home:shell:extra_fields
# Add users with "mailstack --config {config} user add USER".
"""


def add_arguments(parser):
    parser.add_argument("--domain", help="the mail domain (default: $myhostname minus its first label)")
    parser.add_argument("--hostname", help="the host name (default: mail.DOMAIN, or the machine's name)")
    parser.add_argument("--ports", choices=sorted(PORTS), default="standard",
                        help="standard ports, or dev: unprivileged ports on loopback")
    parser.add_argument("--queue-directory", help="the mail queue (default: DIR/queue)")
    parser.add_argument("--data-directory", help="writable state (default: DIR/data)")
    parser.add_argument("--mail-directory", help="users' maildirs (default: DIR/mail)")
    parser.add_argument("--postmaster", metavar="ADDRESS",
                        help="who reads postmaster@ and abuse@ mail and bounces (default: root, the local system account)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing configuration")


def run(args):
    directory = os.path.abspath(args.config)
    hostname, domain = _names(args.hostname, args.domain)
    main_cf = os.path.join(directory, "main.cf")
    if os.path.exists(main_cf) and not args.force:
        raise ConfigError("%s exists; use --force to overwrite it" % main_cf)
    dirs = {
        "queue": os.path.abspath(args.queue_directory or os.path.join(directory, "queue")),
        "data": os.path.abspath(args.data_directory or os.path.join(directory, "data")),
        "mail": os.path.abspath(args.mail_directory or os.path.join(directory, "mail")),
    }
    os.makedirs(directory, exist_ok=True)
    for sub in QUEUE_SUBDIRS:
        os.makedirs(os.path.join(dirs["queue"], sub), mode=0o700, exist_ok=True)
    os.makedirs(dirs["data"], mode=0o700, exist_ok=True)
    os.makedirs(dirs["mail"], mode=0o700, exist_ok=True)
    tls_dir = os.path.join(directory, "tls")
    os.makedirs(tls_dir, mode=0o700, exist_ok=True)
    write_certificates(tls_dir, hostname)
    _write(main_cf, main_cf_text(hostname, domain, dirs, args.ports))
    _write(os.path.join(directory, "master.cf"), master_cf_text(args.ports))
    _write_new(os.path.join(directory, "passwd"), PASSWD.format(config=directory), 0o640)
    postmaster = args.postmaster or "postmaster@localhost"
    _write_new(os.path.join(directory, "aliases"), ALIASES.format(root=args.postmaster or "root"))
    _write_new(os.path.join(directory, "virtual"), VIRTUAL.format(
        path=os.path.join(directory, "virtual"), domain=domain, postmaster=postmaster))
    _build_tables(directory)
    print("mailstack: configuration written to %s (host %s, domain %s, %s ports)"
          % (directory, hostname, domain, args.ports))
    print("mailstack: clients that verify certificates should trust %s" % os.path.join(tls_dir, "ca.pem"))
    return 0


def _build_tables(directory):
    """Compile the aliases and virtual tables, as newaliases and postmap would."""
    from mailstack.admin.postmap import build
    for spec, aliases in (("hash:" + os.path.join(directory, "aliases"), True),
                          ("hash:" + os.path.join(directory, "virtual"), False)):
        if not os.path.exists(spec[len("hash:"):] + ".db"):
            build(spec, aliases=aliases)


def _names(hostname, domain):
    if hostname and not domain:
        domain = hostname.partition(".")[2] or "localdomain"
    if domain and not hostname:
        hostname = "mail." + domain
    if not hostname:
        hostname = default_hostname()
        domain = hostname.partition(".")[2] or "localdomain"
    return hostname.lower(), domain.lower()


def _write(path, text, mode=0o644):
    replace_file(path, text, default_mode=mode)
    os.chmod(path, mode)


def _write_new(path, text, mode=0o644):
    if not os.path.exists(path):
        _write(path, text, mode)


def main_cf_text(hostname, domain, dirs, ports):
    """Return the main.cf that init writes."""
    lines = [
        "# mailstack main.cf, written by 'mailstack init'.",
        "# Syntax as Postfix's main.cf; 'mailstack postconf -d' lists every parameter and its default,",
        "# docs/parameters.md documents them.",
        "",
        "myhostname = %s" % hostname,
        "mydomain = %s" % domain,
        "myorigin = $mydomain",
        "mydestination = $myhostname, localhost.$mydomain, localhost",
        "mynetworks = 127.0.0.0/8 [::1]/128",
        "inet_interfaces = %s" % ("loopback-only" if ports == "dev" else "all"),
        "",
        "queue_directory = %s" % dirs["queue"],
        "data_directory = %s" % dirs["data"],
        "",
        "# Mail for these domains goes to the users of the passwd-file below.",
        "virtual_mailbox_domains = $mydomain",
        "mail_location = maildir:%s/%%d/%%n/Maildir" % dirs["mail"],
        "alias_maps = hash:${config_directory}/aliases",
        "virtual_alias_maps = hash:${config_directory}/virtual",
        "",
        "# Users and passwords (Dovecot passwd-file format).",
        "passdb = passwd-file:${config_directory}/passwd",
        "userdb = passwd-file:${config_directory}/passwd",
        "auth_mechanisms = plain login",
        "default_pass_scheme = SHA512-CRYPT",
        "",
        "# TLS: a certificate signed by the local CA in tls/ca.pem.",
        "smtpd_tls_cert_file = ${config_directory}/tls/server.pem",
        "smtpd_tls_key_file = ${config_directory}/tls/server.key",
        "smtpd_tls_security_level = may",
        "ssl_cert = $smtpd_tls_cert_file",
        "ssl_key = $smtpd_tls_key_file",
        "",
    ]
    return "\n".join(lines)


def master_cf_text(ports):
    """Return the master.cf that init writes for the ``standard`` or ``dev`` ports."""
    p = PORTS[ports]
    return """\
# mailstack master.cf, written by 'mailstack init'.
# name       endpoint      [program] [-o name=value ...]
smtp         tcp:{smtp}
submission   tcp:{submission}
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
smtps        ssl:{smtps}
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pop3         tcp:{pop3}
pop3s        ssl:{pop3s}
imap         tcp:{imap}
imaps        ssl:{imaps}
qmgr         -
pickup       -
""".format(**p)


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def write_certificates(tls_dir, hostname):
    """Write a local CA (ca.pem, ca.key) and a server certificate signed by it (server.pem, server.key).

    An existing CA is reused, so clients that already trust it keep working.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_pem, ca_key_path = os.path.join(tls_dir, "ca.pem"), os.path.join(tls_dir, "ca.key")
    if os.path.exists(ca_pem) and os.path.exists(ca_key_path):
        with open(ca_pem, "rb") as handle:
            ca_cert = x509.load_pem_x509_certificate(handle.read())
        with open(ca_key_path, "rb") as handle:
            ca_key = serialization.load_pem_private_key(handle.read(), None)
    else:
        ca_key = _key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailstack"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "mailstack local CA for %s" % hostname)])
        ca_cert = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
        _write(ca_key_path, _pem_key(ca_key).decode(), 0o600)
        _write(ca_pem, ca_cert.public_bytes(serialization.Encoding.PEM).decode())
    key = _key()
    names = [x509.DNSName(hostname), x509.DNSName("localhost"),
             x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256()))
    _write(os.path.join(tls_dir, "server.key"), _pem_key(key).decode(), 0o600)
    _write(os.path.join(tls_dir, "server.pem"), cert.public_bytes(serialization.Encoding.PEM).decode())
