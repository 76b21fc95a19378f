# -*- test-case-name: tests.config.test_params -*-
"""Every configuration parameter, declared once.

Each :class:`Param` has a name, a type from :mod:`mailstack.config.types`, a
default written in main.cf syntax (so ``$myhostname`` works in defaults, as
in Postfix's ``mail_params.h``) and a one-line doc.  ``docs/parameters.md``
is generated from this module (``mailstack postconf --docs``) and a test
checks that it is current.

Names are Postfix's where the meaning matches, Dovecot's for the auth and
mailbox side; new names carry their service as a prefix.  A few defaults
depend on the machine (``myhostname``, ``mynetworks``): they are callables
that receive the :class:`~mailstack.config.maincf.Environment`.
"""

from dataclasses import dataclass
from typing import Callable, Union

from mailstack.config import types as T
from mailstack.util import netinfo


@dataclass(frozen=True)
class Param:
    """One configuration parameter.

    Attributes:
        name: the main.cf name.
        type: a :class:`~mailstack.config.types.ParamType` instance.
        default: main.cf text, or a callable ``(env) -> text`` for
            machine-dependent defaults.
        doc: one line for the reference documentation.
        group: the subsystem heading the parameter is listed under.
    """

    name: str
    type: T.ParamType
    default: Union[str, Callable]
    doc: str
    group: str = ""

    def default_text(self, env):
        """Return the default as main.cf text (unexpanded)."""
        if callable(self.default):
            return self.default(env)
        return self.default


def _myhostname(env):
    """the machine's fully-qualified host name"""
    return env.hostname


def _mydomain(env):
    """$myhostname minus its first label, or localdomain"""
    head, dot, tail = env.hostname.partition(".")
    return tail if dot and tail else "localdomain"


def _mynetworks(env):
    """loopback plus this machine's networks per $mynetworks_style"""
    return " ".join(netinfo.mynetworks(env.mynetworks_style))


def _config_directory(env):
    """the directory given with --config"""
    return env.config_directory


_GROUPS = []


def _group(title, *params):
    _GROUPS.append((title, params))
    return [Param(name, ptype, default, doc, title) for name, ptype, default, doc in params]


_ALL = []

_ALL += _group(
    "Host and domain names",
    ("myhostname", T.STRING, _myhostname,
     "The fully-qualified host name of this mail system; defaults to the machine's name."),
    ("mydomain", T.STRING, _mydomain,
     "The internet domain of this mail system; defaults to $myhostname minus its first label."),
    ("myorigin", T.STRING, "$myhostname",
     "The domain appended to unqualified sender and recipient addresses."),
    ("mydestination", T.LIST, "$myhostname, localhost.$mydomain, localhost",
     "The domains this machine delivers to locally."),
    ("mail_name", T.STRING, "mailstack",
     "The mail system name shown in the SMTP greeting and in Received: headers."),
    ("smtpd_banner", T.STRING, "$myhostname ESMTP $mail_name",
     "The text that follows the 220 status code in the SMTP greeting."),
)

_ALL += _group(
    "Networks and interfaces",
    ("mynetworks_style", T.Choice("host", "subnet", "class"), "host",
     "How $mynetworks is computed when it is not set: host, subnet or class."),
    ("mynetworks", T.LIST, _mynetworks,
     "The trusted SMTP clients (network/mask or host address), which may relay."),
    ("inet_interfaces", T.LIST, "all",
     "The addresses that master.cf listeners without an explicit interface bind to (all, loopback-only or addresses)."),
    ("inet_protocols", T.Choice("all", "ipv4", "ipv6"), "all",
     "The IP protocols used for listeners and outbound connections."),
    ("login_trusted_networks", T.LIST, "",
     "Client networks whose plaintext logins count as secure, as in Dovecot."),
)

_ALL += _group(
    "Files and directories",
    ("config_directory", T.PATH, _config_directory,
     "The directory holding main.cf and master.cf."),
    ("queue_directory", T.PATH, "/var/spool/mailstack",
     "The root of the mail queue (maildrop, incoming, active, deferred, hold, corrupt)."),
    ("data_directory", T.PATH, "/var/lib/mailstack",
     "Where writable state lives: caches, greylist and auth state."),
    ("mail_spool_directory", T.PATH, "/var/mail",
     "The directory of UNIX-style mailboxes, for users without $home_mailbox."),
    ("home_mailbox", T.STRING, "Maildir/",
     "The mailbox path relative to the user's home; a trailing / means maildir."),
    ("mail_location", T.STRING, "maildir:~/Maildir",
     "Dovecot-style default mail location for users whose userdb gives none (%u, %n, %d, ~)."),
    ("maillog_file", T.PATH, "",
     "Write the mail log to this file instead of standard output when not running in the foreground."),
    ("syslog_name", T.STRING, "mailstack",
     "The program name at the start of every log line (mailstack/smtpd[PID]: ...)."),
)

_ALL += _group(
    "Limits",
    ("message_size_limit", T.Size(minimum=0), "10240000",
     "The maximal size in bytes of a message, including envelope information."),
    ("mailbox_size_limit", T.Size(minimum=0), "51200000",
     "The maximal size of a mailbox or maildir file that local delivery may write."),
    ("quota_full_tempfail", T.BOOL, "no",
     "Whether a delivery to a full mailbox fails temporarily (4xx) instead of permanently."),
)

_ALL += _group(
    "Address handling and lookup tables",
    ("relay_domains", T.LIST, "",
     "The remote domains this system relays mail to (Postfix 3 default: none)."),
    ("relayhost", T.STRING, "",
     "The next-hop for non-local mail; empty means deliver by MX lookup."),
    ("alias_maps", T.MAPS, "hash:${config_directory}/aliases",
     "The alias tables used by local delivery."),
    ("alias_database", T.MAPS, "hash:${config_directory}/aliases",
     "The alias tables that newaliases rebuilds."),
    ("virtual_alias_maps", T.MAPS, "",
     "Address rewriting tables for virtual alias addresses and domains."),
    ("virtual_alias_domains", T.LIST, "$virtual_alias_maps",
     "Domains for which every address is aliased to another address."),
    ("virtual_mailbox_domains", T.LIST, "",
     "Domains whose mailboxes are delivered by the virtual delivery agent."),
    ("virtual_mailbox_maps", T.MAPS, "",
     "Valid recipients in $virtual_mailbox_domains and their mailbox paths."),
    ("virtual_mailbox_base", T.PATH, "",
     "The directory that $virtual_mailbox_maps paths are relative to."),
    ("recipient_delimiter", T.STRING, "",
     "The separator between user names and address extensions (user+foo)."),
)

_ALL += _group(
    "SMTP server",
    ("smtpd_relay_restrictions", T.LIST, "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
     "Relay control applied at RCPT TO before $smtpd_recipient_restrictions."),
    ("smtpd_client_restrictions", T.LIST, "",
     "Restrictions on the client host, at connect (or at RCPT TO with $smtpd_delay_reject)."),
    ("smtpd_helo_restrictions", T.LIST, "",
     "Restrictions on the HELO/EHLO name (at RCPT TO with $smtpd_delay_reject)."),
    ("smtpd_sender_restrictions", T.LIST, "",
     "Restrictions on the MAIL FROM address (at RCPT TO with $smtpd_delay_reject)."),
    ("smtpd_recipient_restrictions", T.LIST, "",
     "Restrictions on the RCPT TO address, after $smtpd_relay_restrictions."),
    ("smtpd_data_restrictions", T.LIST, "",
     "Restrictions applied to the DATA (and first BDAT) command."),
    ("smtpd_end_of_data_restrictions", T.LIST, "",
     "Restrictions applied when the message content has been received."),
    ("smtpd_restriction_classes", T.LIST, "",
     "Names of restriction classes: each is a parameter holding a restriction list usable by name."),
    ("smtpd_delay_reject", T.BOOL, "yes",
     "Evaluate client, HELO and sender restrictions at RCPT TO, so rejects name the recipient."),
    ("smtpd_helo_required", T.BOOL, "no",
     "Require HELO or EHLO before MAIL FROM (and ETRN)."),
    ("strict_rfc821_envelopes", T.BOOL, "no",
     "Require <> around MAIL FROM and RCPT TO addresses, as RFC 821/5321 do."),
    ("smtpd_reject_unlisted_recipient", T.BOOL, "yes",
     "Reject RCPT TO addresses that are not listed for their domain class (local, virtual, relay)."),
    ("disable_vrfy_command", T.BOOL, "yes",
     "Disable the VRFY command (it lets outsiders harvest addresses)."),
    ("line_length_limit", T.Size(minimum=512), "2048",
     "The longest SMTP command line accepted; longer lines are answered 500 5.5.2."),
    ("smtpd_recipient_limit", T.Int(minimum=1), "1000",
     "The most recipients accepted per message."),
    ("smtpd_timeout", T.Time(unit="s"), "300s",
     "How long the server waits for the client's next command or data before it disconnects (421 4.4.2)."),
    ("smtpd_error_sleep_time", T.Time(unit="s"), "5s",
     "Delay before each 4xx/5xx reply while the session has made fewer than $smtpd_soft_error_limit errors."),
    ("smtpd_soft_error_limit", T.Int(minimum=1), "10",
     "From this many errors on, every reply waits one second per error made."),
    ("smtpd_hard_error_limit", T.Int(minimum=1), "100",
     "The session is ended (421 4.7.0) when it has made this many errors."),
    ("smtpd_junk_command_limit", T.Int(minimum=1), "100",
     "After this many NOOP, VRFY, ETRN or RSET commands in a session, each further one counts as an error."),
    ("smtpd_client_connection_count_limit", T.Int(minimum=0), "50",
     "The most simultaneous connections from one client address per service; 0 means no limit."),
    ("smtpd_client_event_limit_exceptions", T.LIST, "$mynetworks",
     "Clients to which $smtpd_client_connection_count_limit does not apply."),
    ("smtpd_peername_lookup", T.BOOL, "yes",
     "Look up (and forward-confirm) the client's host name; otherwise it is always unknown."),
    ("smtpd_forbid_bare_newline", T.Choice("no", "normalize", "yes", "reject"), "normalize",
     "Bare <LF> line ends: normalize accepts them as line ends (only CRLF.CRLF ends DATA); yes/reject refuse and disconnect."),
    ("smtpd_forbid_bare_newline_exclusions", T.LIST, "$mynetworks",
     "Clients exempt from $smtpd_forbid_bare_newline = yes."),
    ("smtpd_forbid_bare_newline_reject_code", T.Int(minimum=400, maximum=599), "550",
     "The reply code when a bare <LF> is refused."),
    ("fast_flush_domains", T.LIST, "$relay_domains",
     "Domains for which ETRN may ask for a queue run."),
    ("reject_code", T.Int(minimum=400, maximum=599), "554",
     "The reply code of the reject restriction."),
    ("defer_code", T.Int(minimum=400, maximum=499), "450",
     "The reply code of the defer restriction and defer_unauth_destination."),
    ("relay_domains_reject_code", T.Int(minimum=400, maximum=599), "554",
     "The reply code when reject_unauth_destination refuses to relay."),
    ("unknown_local_recipient_reject_code", T.Int(minimum=400, maximum=599), "550",
     "The reply code for a recipient not in $local_recipient_maps."),
    ("unknown_virtual_alias_reject_code", T.Int(minimum=400, maximum=599), "550",
     "The reply code for a recipient in a virtual alias domain not in $virtual_alias_maps."),
    ("unknown_virtual_mailbox_reject_code", T.Int(minimum=400, maximum=599), "550",
     "The reply code for a recipient in a virtual mailbox domain that has no mailbox."),
    ("unknown_relay_recipient_reject_code", T.Int(minimum=400, maximum=599), "550",
     "The reply code for a recipient in a relay domain not in $relay_recipient_maps."),
    ("relay_recipient_maps", T.MAPS, "",
     "Valid recipients in $relay_domains; empty means every address is accepted."),
)

_ALL += _group(
    "Cleanup and address rewriting",
    ("header_size_limit", T.Size(minimum=1024), "102400",
     "The most bytes of message header kept as header; the rest is passed on as body."),
    ("hopcount_limit", T.Int(minimum=1), "50",
     "The most Received: headers a message may have (ours included) before it is refused as a mail loop."),
    ("swap_bangpath", T.BOOL, "yes",
     "Rewrite site!user into user@site."),
    ("allow_percent_hack", T.BOOL, "yes",
     "Rewrite user%domain (also user%domain@local-domain) into user@domain."),
    ("append_at_myorigin", T.BOOL, "yes",
     "Append @$myorigin to addresses without a domain."),
    ("append_dot_mydomain", T.BOOL, "yes",
     "Append .$mydomain to domains without a dot (user@host becomes user@host.$mydomain)."),
    ("canonical_maps", T.MAPS, "",
     "Address mapping for envelope sender and recipient addresses."),
    ("sender_canonical_maps", T.MAPS, "",
     "Address mapping for envelope sender addresses, before $canonical_maps."),
    ("recipient_canonical_maps", T.MAPS, "",
     "Address mapping for envelope recipient addresses, before $canonical_maps."),
    ("canonical_classes", T.LIST, "envelope_sender, envelope_recipient, header_sender, header_recipient",
     "Which addresses canonical mapping applies to."),
    ("propagate_unmatched_extensions", T.LIST, "canonical, virtual",
     "Lookups whose result keeps an address extension the matching key did not have."),
    ("masquerade_domains", T.LIST, "",
     "Domains whose subdomains are stripped from addresses (!domain excludes it)."),
    ("masquerade_exceptions", T.LIST, "",
     "Local parts that are never masqueraded (root, for example)."),
    ("masquerade_classes", T.LIST, "envelope_sender, header_sender, header_recipient",
     "Which addresses masquerading applies to."),
    ("virtual_alias_recursion_limit", T.Int(minimum=1), "1000",
     "The deepest virtual alias expansion before the message is deferred."),
    ("virtual_alias_expansion_limit", T.Int(minimum=1), "1000",
     "The most addresses one virtual alias expansion may produce before the message is deferred."),
    ("relocated_maps", T.MAPS, "",
     "Tables of addresses that moved; mail to them is refused with 550 5.1.6 user has moved to NEW."),
    ("always_bcc", T.STRING, "",
     "An address that receives a blind copy of every message."),
    ("sender_bcc_maps", T.MAPS, "",
     "Blind-copy addresses looked up by envelope sender."),
    ("recipient_bcc_maps", T.MAPS, "",
     "Blind-copy addresses looked up by envelope recipient."),
    ("always_add_missing_headers", T.BOOL, "no",
     "Add missing From:, To:, Date: and Message-ID: headers for every client, not only $local_header_rewrite_clients."),
    ("local_header_rewrite_clients", T.LIST, "permit_inet_interfaces",
     "Clients whose mail gets missing headers: permit_inet_interfaces, permit_mynetworks, permit_sasl_authenticated."),
    ("undisclosed_recipients_header", T.STRING, "To: undisclosed-recipients:;",
     "The header added when a message has no To:, Cc: or Bcc: and missing headers are added."),
)

_ALL += _group(
    "TLS",
    ("smtpd_tls_cert_file", T.PATH, "",
     "The PEM server certificate (optionally followed by its chain) for SMTP TLS."),
    ("smtpd_tls_key_file", T.PATH, "$smtpd_tls_cert_file",
     "The PEM private key that goes with $smtpd_tls_cert_file."),
    ("smtpd_tls_CAfile", T.PATH, "",
     "A file of CA certificates for verifying client certificates."),
    ("smtpd_tls_security_level", T.Choice("", "none", "may", "encrypt"), "",
     "SMTP server TLS: empty or none (no STARTTLS), may (offer STARTTLS), encrypt (require it)."),
    ("smtpd_tls_auth_only", T.BOOL, "no",
     "Offer and accept SMTP AUTH only after STARTTLS."),
    ("ssl_cert", T.PATH, "$smtpd_tls_cert_file",
     "The PEM certificate for POP3 and IMAP TLS (Dovecot name); shares the SMTP one by default."),
    ("ssl_key", T.PATH, "$smtpd_tls_key_file",
     "The PEM private key for $ssl_cert."),
    ("ssl_ca", T.PATH, "$smtpd_tls_CAfile",
     "CA certificates for verifying POP3 and IMAP client certificates."),
    ("ssl_min_protocol", T.Choice("tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"), "tlsv1.2",
     "The lowest TLS protocol version that servers accept."),
)

_ALL += _group(
    "Authentication (Dovecot names)",
    ("passdb", T.Driver(), "passwd-file:${config_directory}/passwd",
     "Where passwords are looked up: driver:args (passwd-file, static, sqlite)."),
    ("userdb", T.Driver(), "passwd-file:${config_directory}/passwd",
     "Where user information (uid, gid, home, mail, quota) is looked up: driver:args."),
    ("auth_mechanisms", T.LIST, "plain",
     "The SASL mechanisms offered to clients (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256)."),
    ("default_pass_scheme", T.STRING, "CRYPT",
     "The password scheme assumed for stored hashes without a {SCHEME} prefix."),
    ("auth_username_format", T.STRING, "%Lu",
     "How user names are normalised before lookup (%Lu lower-cases the whole name)."),
    ("auth_default_realm", T.STRING, "",
     "The domain appended to user names that have none."),
    ("auth_master_user_separator", T.STRING, "",
     "The separator in 'user*master' login names for master user logins."),
    ("auth_cache_size", T.Size(minimum=0), "0",
     "The size of the authentication cache in bytes; 0 disables it."),
    ("auth_cache_ttl", T.Time(unit="s"), "1h",
     "How long a successful lookup stays in the authentication cache."),
    ("auth_cache_negative_ttl", T.Time(unit="s"), "1h",
     "How long a failed lookup (unknown user) stays in the authentication cache."),
    ("auth_failure_delay", T.Time(unit="s"), "2s",
     "The delay before answering a failed authentication; it grows per client address."),
    ("auth_verbose", T.BOOL, "no",
     "Log every failed authentication attempt and its reason."),
    ("disable_plaintext_auth", T.BOOL, "yes",
     "Refuse plaintext authentication on connections that are neither TLS nor trusted (Dovecot)."),
    ("smtpd_sasl_auth_enable", T.BOOL, "no",
     "Offer SMTP AUTH to clients (set per service in master.cf)."),
)

_ALL += _group(
    "Mailbox access (POP3 and IMAP)",
    ("imap_idle_timeout", T.Time(unit="m"), "30m",
     "How long an IMAP session may stay idle before it is logged out; IDLE keeps it alive."),
    ("imap_max_line_length", T.Size(minimum=1024), "64k",
     "The longest IMAP command line accepted, literals excluded."),
    ("pop3_client_timeout", T.Time(unit="s"), "10m",
     "How long a POP3 session may stay idle."),
)

_ALL += _group(
    "Queue manager and delivery",
    ("maximal_queue_lifetime", T.Time(unit="d"), "5d",
     "How long a message may stay in the queue before it is returned to the sender as undeliverable."),
    ("bounce_queue_lifetime", T.Time(unit="d"), "5d",
     "How long a bounce message (null sender) may stay in the queue before it is given up."),
    ("minimal_backoff_time", T.Time(unit="s"), "300s",
     "The shortest time between delivery attempts of a deferred message."),
    ("maximal_backoff_time", T.Time(unit="s"), "4000s",
     "The longest time between delivery attempts of a deferred message."),
    ("queue_run_delay", T.Time(unit="s"), "300s",
     "How often the queue manager scans the deferred queue for messages due for another attempt."),
    ("qmgr_scan_interval", T.Time(unit="s"), "1s",
     "How often the queue manager scans incoming/ for mail queued by other processes."),
    ("qmgr_scan_spacing", T.Time(unit="s"), "0.005s",
     "The least time between the starts of two wake-up scans of incoming/: new mail waits at most this long, "
     "and a stream of new mail is claimed several messages per scan instead of one."),
    ("qmgr_message_active_limit", T.Int(minimum=1), "20000",
     "The most messages the queue manager keeps in the active queue."),
    ("default_destination_concurrency_limit", T.Int(minimum=1), "20",
     "The most parallel deliveries to one destination (transport and next-hop)."),
    ("local_destination_concurrency_limit", T.Int(minimum=1), "2",
     "The most parallel local deliveries to one recipient."),
    ("initial_destination_concurrency", T.Int(minimum=1), "5",
     "The parallel deliveries to a destination before slow start raises or lowers it."),
    ("default_destination_recipient_limit", T.Int(minimum=1), "50",
     "The most recipients per delivery request to one destination."),
    ("local_destination_recipient_limit", T.Int(minimum=1), "1",
     "The most recipients per local delivery request."),
    ("delay_warning_time", T.Time(unit="h"), "0h",
     "Send the sender a delay warning when mail is still queued after this time; 0 disables it."),
    ("bounce_size_limit", T.Size(minimum=0), "50000",
     "The most bytes of the original message returned in a bounce."),
    ("notify_classes", T.LIST, "resource, software",
     "Problem classes reported to the postmaster: bounce, 2bounce, delay, resource, software."),
    ("transport_maps", T.MAPS, "",
     "Tables mapping recipient addresses or domains to transport:nexthop."),
    ("default_transport", T.STRING, "smtp",
     "The transport for recipients that are neither local, virtual nor relayed."),
    ("local_transport", T.STRING, "local:$myhostname",
     "The transport for domains in $mydestination."),
    ("virtual_transport", T.STRING, "virtual",
     "The transport for domains in $virtual_mailbox_domains."),
    ("relay_transport", T.STRING, "relay",
     "The transport for domains in $relay_domains."),
    ("defer_transports", T.LIST, "",
     "Transports that deliver nothing until the queue is flushed (postqueue -f, sendmail -q)."),
    ("luser_relay", T.STRING, "",
     "Where local delivery sends mail for unknown local users ($user, $extension expand)."),
    ("local_recipient_maps", T.MAPS, "",
     "Tables of valid local recipients; empty means every local name passes to local delivery."),
    ("allow_mail_to_commands", T.LIST, "alias, forward",
     "Where local delivery may run |command destinations: alias, forward, include."),
    ("allow_mail_to_files", T.LIST, "alias, forward",
     "Where local delivery may write /file destinations: alias, forward, include."),
    ("forward_path", T.STRING, "$home/.forward",
     "Where local delivery looks for a user's .forward file ($home, $user expand)."),
    ("command_time_limit", T.Time(unit="s"), "1000s",
     "How long a |command delivery may run."),
    ("virtual_userdb_cache_ttl", T.Time(unit="s"), "10s",
     "How long the virtual delivery agent keeps a user found in the userdb (0: look up every delivery)."),
    ("double_bounce_sender", T.STRING, "double-bounce",
     "The sender of postmaster notices; mail to it is discarded, so notices never loop."),
    ("bounce_notice_recipient", T.STRING, "postmaster",
     "Who gets postmaster copies of bounces (notify_classes = bounce)."),
    ("2bounce_notice_recipient", T.STRING, "postmaster",
     "Who gets undeliverable bounces (notify_classes = 2bounce)."),
    ("delay_notice_recipient", T.STRING, "postmaster",
     "Who gets postmaster copies of delay warnings (notify_classes = delay)."),
    ("error_notice_recipient", T.STRING, "postmaster",
     "Who gets notices of resource and software problems."),
    ("smtp_helo_name", T.STRING, "$myhostname",
     "The name the SMTP client sends in EHLO/HELO."),
    ("smtp_connect_timeout", T.Time(unit="s"), "30s",
     "How long the SMTP client waits for a TCP connection to complete."),
    ("smtp_helo_timeout", T.Time(unit="s"), "300s",
     "How long the SMTP client waits for the greeting and for each reply before DATA's end."),
    ("smtp_data_done_timeout", T.Time(unit="s"), "600s",
     "How long the SMTP client waits for the reply to the end of the message."),
    ("smtp_tls_security_level", T.Choice("", "none", "may", "encrypt", "verify", "secure"), "",
     "SMTP client TLS: none, may (STARTTLS when offered, unverified), encrypt (STARTTLS required), "
     "verify or secure (required, with a trusted certificate whose name matches)."),
    ("smtp_tls_CAfile", T.PATH, "",
     "PEM file of the CA certificates the SMTP client trusts at the verify and secure levels; "
     "empty: the system's default trust store."),
    ("smtp_tls_verify_cert_match", T.LIST, "hostname",
     "At smtp_tls_security_level = verify, the names the server certificate may match: hostname "
     "(the MX or relay host name), nexthop, dot-nexthop, or literal names."),
    ("smtp_tls_secure_cert_match", T.LIST, "nexthop, dot-nexthop",
     "At smtp_tls_security_level = secure, the names the server certificate may match: nexthop "
     "(the next-hop domain), dot-nexthop (its sub-domains), hostname, or literal names."),
    ("smtp_dns_servers", T.LIST, "",
     "DNS servers (address or address:port) the SMTP client asks for MX and A records; empty: /etc/resolv.conf."),
    ("smtp_generic_maps", T.MAPS, "",
     "Address mapping the SMTP client applies to the envelope and the From:/To:/Cc:... headers of mail it sends."),
    ("smtp_sasl_auth_enable", T.BOOL, "no",
     "Let the SMTP client log in (SMTP AUTH) to servers that smtp_sasl_password_maps has a password for."),
    ("smtp_sasl_password_maps", T.MAPS, "",
     "Tables of username:password per server, keyed by the host name, then the next hop as written "
     "([host]:port, [host], host:port, domain)."),
    ("smtp_sasl_mechanism_filter", T.LIST, "",
     "The SASL mechanisms the SMTP client may use among those a server offers; empty: all."),
    ("smtp_sasl_security_options", T.LIST, "noplaintext, noanonymous",
     "SMTP client SASL restrictions on plaintext sessions: noplaintext, noactive, nodictionary, "
     "noanonymous, mutual_auth."),
    ("smtp_sasl_tls_security_options", T.LIST, "$smtp_sasl_security_options",
     "SMTP client SASL restrictions after STARTTLS (noanonymous allows PLAIN and LOGIN over TLS)."),
    ("smtp_sasl_auth_soft_bounce", T.BOOL, "yes",
     "Defer instead of bouncing when a server rejects the SMTP client's login with a 5xx reply."),
)

_ALL += _group(
    "Authentication core (passdb/userdb, master users, failure delay)",
    ("auth_master_passdb", T.Driver(), "",
     "The passdb of master users, who may log in as any user (PLAIN authzid or user*master); empty: none."),
    ("auth_failure_delay_max", T.Time(unit="s"), "30s",
     "The longest failure delay: $auth_failure_delay doubles per failure from one address up to this."),
    ("auth_failure_delay_reset", T.Time(unit="s"), "10m",
     "An address with no failed authentication for this long gets $auth_failure_delay again."),
    ("mail_home", T.STRING, "",
     "Dovecot-style default home directory for users whose userdb gives none (%u, %n, %d)."),
)

_ALL += _group(
    "Mail store (maildir)",
    ("mail_fsync", T.Choice("optimized", "always", "never"), "optimized",
     "When the store fsyncs message files and directories (Dovecot); never is for tests and benchmarks only."),
    ("mailbox_idle_check_interval", T.Time(unit="s"), "30s",
     "How often watched folders are polled for other processes' changes, besides inotify (Dovecot)."),
    ("quota_rule", T.STRING, "",
     "Default Maildir++ quota (Dovecot syntax *:storage=1G:messages=10000); empty means none; userdb may override."),
)

_ALL += _group(
    "POP3 server",
    ("pop3_uidl_format", T.STRING, "%08Xu%08Xv",
     "How POP3 UIDLs are built (Dovecot): %u UID, %v UIDVALIDITY, %g GUID, %f file name; keep Dovecot's default."),
    ("pop3d_enable_apop", T.BOOL, "no",
     "Offer APOP (timestamp in the POP3 greeting); it works only for users whose password is stored in plaintext."),
)

_ALL += _group(
    "Lookup tables",
    ("default_database_type", T.Choice("hash", "texthash"), "hash",
     "The table type postmap and newaliases build when a file name has no type: prefix."),
    ("parent_domain_matches_subdomains", T.LIST,
     "debug_peer_list, fast_flush_domains, mynetworks, permit_mx_backup_networks, "
     "qmqpd_authorized_clients, relay_domains, smtpd_access_maps",
     "Features where a domain name also matches its subdomains; elsewhere .domain is needed for that."),
    ("proxy_interfaces", T.LIST, "",
     "Addresses on which this system receives mail through a proxy or NAT; they count as local."),
    ("lookup_table_check_interval", T.Time(unit="s"), "1s",
     "How often an open table file is checked for changes (postmap, edits) and re-read; 0 checks every lookup."),
)

_ALL += _group(
    "IMAP server",
    ("imapd_login_timeout", T.Time(unit="s"), "60s",
     "How long an IMAP client may take to log in before it is disconnected."),
    ("imapd_idle_notify_interval", T.Time(unit="s"), "2m",
     "How often an IMAP session in IDLE is sent '* OK Still here' (Dovecot's imap_idle_notify_interval)."),
    ("imapd_max_auth_attempts", T.Size(minimum=1), "3",
     "Failed LOGIN/AUTHENTICATE attempts after which an IMAP connection is closed."),
)

_ALL += _group(
    "Processes",
    ("process_min_avail", T.Int(minimum=1, maximum=256), "1",
     "Processes serving each smtpd, pop3d and imapd TCP listener (Dovecot's high-performance mode: the number of "
     "CPU cores); the master starts N-1 workers on the same sockets; per-client connection counts stay global."),
)

PARAMS = {p.name: p for p in _ALL}

if len(PARAMS) != len(_ALL):
    raise RuntimeError("a parameter is declared twice in mailstack.config.params")


def groups():
    """Return ``[(title, [Param, ...]), ...]`` in declaration order."""
    result = []
    for title, entries in _GROUPS:
        result.append((title, [PARAMS[entry[0]] for entry in entries]))
    return result
