# -*- test-case-name: tests.smtpd.test_address -*-
"""RFC 5321 envelope addresses: parsing MAIL/RCPT paths, quoting, xtext.

Addresses travel through mailstack in *internal form*: the local part
unquoted (``a b@example.com``), as Postfix's ``quote_822_local`` /
``unquote_822_local`` split it.  :func:`quote_address` gives the *external
form* used on the wire and in headers (``"a b"@example.com``).

- :func:`parse_path` reads the argument of ``MAIL FROM:`` / ``RCPT TO:``:
  ``<addr> PARAM=VALUE ...``, the null path ``<>``, source routes
  ``<@relay1,@relay2:user@domain>`` (RFC 5321 §4.1.1.3 says to accept and
  ignore them), quoted local parts.  With ``strict`` (``strict_rfc821_envelopes``)
  the angle brackets are required; otherwise a bare address is accepted, as
  Postfix does by default.
- :func:`parse_params` splits ESMTP parameters (RFC 5321 §4.1.2,
  ``esmtp-param``); keywords are upper-cased.
- :func:`xtext_decode` / :func:`xtext_encode`: RFC 3461 §4 xtext (ENVID, ORCPT).

Nothing here touches the network or configuration; :mod:`mailstack.common`
modules import only :mod:`mailstack.util`.
"""

import re

# RFC 5321 §4.1.2 atext plus the dot; anything else needs quoting.
_ATOM_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+)*$")
_DOMAIN_RE = re.compile(r"^(?:\[[^\[\]\\\s]+\]|[A-Za-z0-9_\x80-\U0010ffff](?:[A-Za-z0-9_.\x80-\U0010ffff-]*[A-Za-z0-9_\x80-\U0010ffff])?\.?)$")
_KEYWORD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class AddressError(ValueError):
    """A path or address that does not parse; ``str()`` says why."""


def split_address(address):
    """Split an internal-form address at its last ``@``.

    Returns:
        ``(local, domain)``; domain is ``""`` for an address without ``@``.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain


def quote_local(local):
    """Return ``local`` quoted as RFC 5321 §4.1.2 requires (unchanged when it is a dot-atom)."""
    if local == "" or _ATOM_RE.match(local):
        return local
    return '"%s"' % local.replace("\\", "\\\\").replace('"', '\\"')


def quote_address(address):
    """Return the external form of an internal-form address (``a b@d`` -> ``"a b"@d``)."""
    if not address:
        return address
    local, domain = split_address(address)
    if "@" not in address:
        return quote_local(local)
    return "%s@%s" % (quote_local(local), domain)


def _unquote_local(text):
    if not (len(text) >= 2 and text[0] == '"' and text[-1] == '"'):
        return text
    out, escaped = [], False
    for char in text[1:-1]:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)


def _find_close(text, start):
    """Return the index of the ``>`` that closes a path opened before ``start``, or -1."""
    quoted = escaped = False
    for i in range(start, len(text)):
        char = text[i]
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return i
    return -1


def _split_local_domain(mailbox):
    """Split an external-form mailbox at the last ``@`` that is not inside quotes."""
    quoted = escaped = False
    at = -1
    for i, char in enumerate(mailbox):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "@" and not quoted:
            at = i
    if quoted:
        raise AddressError("unbalanced quote")
    if at < 0:
        return mailbox, None
    return mailbox[:at], mailbox[at + 1:]


def parse_mailbox(mailbox):
    """Check an external-form mailbox and return it in internal form.

    A source route (``@a,@b:user@d``) is dropped (RFC 5321 §4.1.1.3).

    Raises:
        AddressError: when the mailbox is not a valid address.
    """
    if mailbox.startswith("@"):
        colon = mailbox.find(":")
        if colon < 0:
            raise AddressError("bad source route")
        mailbox = mailbox[colon + 1:]
    if not mailbox:
        raise AddressError("empty address")
    if any(c in mailbox for c in "\r\n\0"):
        raise AddressError("control character in address")
    local, domain = _split_local_domain(mailbox)
    if local.startswith('"'):
        if not (local.endswith('"') and len(local) >= 2):
            raise AddressError("bad quoted local part")
        local = _unquote_local(local)
    elif not _ATOM_RE.match(local):
        raise AddressError("bad local part")
    if domain is None:
        return local
    if not domain or not _DOMAIN_RE.match(domain):
        raise AddressError("bad domain")
    return "%s@%s" % (local, domain)


def parse_path(text, strict=False):
    """Parse the argument of ``MAIL FROM:`` or ``RCPT TO:``.

    Args:
        text: everything after the colon, e.g. ``" <a@example.com> SIZE=100"``.
        strict: require ``<...>`` (``strict_rfc821_envelopes = yes``).

    Returns:
        ``(address, params_text)``: the address in internal form (``""`` for
        the null path ``<>``) and the unparsed ESMTP parameters.

    Raises:
        AddressError: when the path does not parse.
    """
    text = text.strip()
    if text.startswith("<"):
        close = _find_close(text, 1)
        if close < 0:
            raise AddressError("missing '>'")
        inner, rest = text[1:close], text[close + 1:]
        if rest and not rest[0].isspace():
            raise AddressError("garbage after '>'")
        if inner == "":
            return "", rest.strip()
        return parse_mailbox(inner), rest.strip()
    if strict:
        raise AddressError("missing '<'")
    if not text:
        raise AddressError("empty address")
    word, _, rest = text.partition(" ")
    return parse_mailbox(word), rest.strip()


def parse_params(text):
    """Split ESMTP parameters into ``{KEYWORD: value-or-None}``.

    Raises:
        AddressError: for a malformed or repeated keyword.
    """
    params = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not _KEYWORD_RE.match(key) or (eq and not value):
            raise AddressError("bad parameter %r" % word)
        key = key.upper()
        if key in params:
            raise AddressError("duplicate parameter %s" % key)
        params[key] = value if eq else None
    return params


def xtext_decode(text):
    """Decode RFC 3461 §4 xtext (``+2B`` is ``+``).

    Raises:
        AddressError: for a bad ``+HH`` escape or a character outside xtext.
    """
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char == "+":
            hexa = text[i + 1:i + 3]
            if len(hexa) != 2 or not re.match(r"^[0-9A-F]{2}$", hexa):
                raise AddressError("bad xtext escape")
            out.append(chr(int(hexa, 16)))
            i += 3
            continue
        if char == "=" or not ("!" <= char <= "~"):
            raise AddressError("bad xtext character")
        out.append(char)
        i += 1
    return "".join(out)


def xtext_encode(text):
    """Encode text as RFC 3461 xtext."""
    return "".join("+%02X" % ord(c) if (c in "+=" or not ("!" <= c <= "~")) else c for c in text)
