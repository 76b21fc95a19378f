# -*- test-case-name: tests.agents.test_smtp_sasl -*-
"""The SMTP client's SASL login (Postfix ``smtp_sasl_*``): password lookup, mechanism choice, AUTH dialogue.

With ``smtp_sasl_auth_enable = yes``, after EHLO (and after STARTTLS when
TLS is used) the client logs in when the server offers ``AUTH`` and
``smtp_sasl_password_maps`` has an entry for the server.  The table is
searched as Postfix's ``smtp_sasl_passwd_lookup`` does: first the name of
the host connected to (the MX host name after an MX lookup, ``relay.example``
for ``[relay.example]:587``), then the next hop exactly as written in
``relayhost`` or the transport (``[relay.example]:587``,
``relay.example:587``, ``example.com``).  Keys are looked up in lower
case.  The value is ``username:password``.  No entry: no AUTH, the mail
goes unauthenticated, as in Postfix.

The mechanisms offered are narrowed by ``smtp_sasl_mechanism_filter``
(empty: all; nothing left: a warning and no AUTH), then by the security
options (``smtp_sasl_security_options`` on plaintext sessions,
``smtp_sasl_tls_security_options`` after STARTTLS), Cyrus SASL's flags:

=============  ================================================
noplaintext    no PLAIN, LOGIN
noactive       no PLAIN, LOGIN, CRAM-MD5
nodictionary   no PLAIN, LOGIN, CRAM-MD5, SCRAM-*
noanonymous    no ANONYMOUS (mailstack has no client for it)
mutual_auth    only SCRAM-* (the server proves it knows the password)
=============  ================================================

Among what remains the client prefers SCRAM-SHA-256, SCRAM-SHA-1,
CRAM-MD5, PLAIN, LOGIN.  The client sides of the mechanisms are
:mod:`mailstack.auth.mechs.client`'s.  Note that Postfix's defaults
(``noplaintext, noanonymous`` for both) refuse PLAIN and LOGIN even over
TLS; a provider that only takes PLAIN needs
``smtp_sasl_tls_security_options = noanonymous``, as Postfix's
SASL_README says.

SCRAM's server-final message, when the server sends it as a 334 challenge
(RFC 4954 §4), is checked and acknowledged with an empty line: a wrong
server signature cancels the login.  A server that answers 235 without it
is taken at its word.

Secrets never reach the log: only mechanism names and the server's replies do.

Parameters read: ``smtp_sasl_auth_enable``, ``smtp_sasl_password_maps``,
``smtp_sasl_mechanism_filter``, ``smtp_sasl_security_options``,
``smtp_sasl_tls_security_options``, ``smtp_sasl_auth_soft_bounce``.
"""

# Client preference, strongest first.
PREFERENCE = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN")

# The security option words each mechanism fails (Cyrus SASL's SASL_SEC_* flags it lacks).
_FAILS = {
    "PLAIN": {"noplaintext", "noactive", "nodictionary", "mutual_auth"},
    "LOGIN": {"noplaintext", "noactive", "nodictionary", "mutual_auth"},
    "CRAM-MD5": {"noactive", "nodictionary", "mutual_auth"},
    "SCRAM-SHA-1": {"nodictionary"},
    "SCRAM-SHA-256": {"nodictionary"},
}

SECURITY_OPTIONS = ("noplaintext", "noactive", "nodictionary", "noanonymous", "mutual_auth")


def check_security_options(words, parameter):
    """Return ``words`` lower-cased as a frozenset.

    Raises:
        ValueError: for a word that is not a Cyrus SASL security option.
    """
    options = frozenset(w.lower() for w in words)
    unknown = sorted(options - set(SECURITY_OPTIONS))
    if unknown:
        raise ValueError("%s: unknown SASL security option %r (known: %s)"
                         % (parameter, unknown[0], ", ".join(SECURITY_OPTIONS)))
    return options


def offered_mechanisms(extensions):
    """Return the upper-case mechanism names of the EHLO ``AUTH`` (or old ``AUTH=``) lines.

    Args:
        extensions: ``{keyword: line}`` from the EHLO reply.
    """
    found = []
    for keyword, line in extensions.items():
        if keyword == "AUTH" or keyword.startswith("AUTH="):
            for word in line[5:].split():
                if word.upper() not in found:
                    found.append(word.upper())
    return found


def filter_mechanisms(offered, mechanism_filter):
    """Return the offered mechanisms that ``smtp_sasl_mechanism_filter`` lets through (all when it is empty)."""
    if not mechanism_filter:
        return list(offered)
    allowed = {m.upper() for m in mechanism_filter}
    return [m for m in offered if m in allowed]


def choose_mechanism(offered, options):
    """Return the preferred mechanism among ``offered`` that the security ``options`` allow, or None."""
    for name in PREFERENCE:
        if name in offered and not (_FAILS[name] & options):
            return name
    return None


def password_keys(host, nexthop):
    """Return the ``smtp_sasl_password_maps`` keys in search order: the host name, then the next hop as written."""
    keys = []
    for key in (host.lower(), nexthop.strip().lower()):
        if key and key not in keys:
            keys.append(key)
    return keys


async def find_password(maps, host, nexthop):
    """Look the server up in ``smtp_sasl_password_maps``.

    Returns:
        ``(username, password)``, or None when no key matches.

    Raises:
        TableTemporaryError: a table could not answer.
    """
    for key in password_keys(host, nexthop):
        value = await maps.lookup(key)
        if value is not None:
            user, _, password = value.strip().partition(":")
            return user, password
    return None
