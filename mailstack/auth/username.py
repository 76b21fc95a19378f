# -*- test-case-name: tests.auth.test_username -*-
"""User name normalisation and Dovecot's ``%`` variables.

``auth_default_realm`` is appended to names without ``@``, then
``auth_username_format`` (default ``%Lu``) rewrites the name.  Variables,
as Dovecot's: ``%u`` the whole name, ``%n`` the part before ``@``, ``%d``
the domain, ``%%`` a percent sign; the modifiers ``L`` and ``U`` lower- or
upper-case (``%Ln``), and long forms ``%{user}``, ``%{username}``,
``%{domain}`` are accepted too.  Passdb and userdb drivers use
:func:`expand` for paths and queries.
"""

import re

_VAR_RE = re.compile(r"%(?:([LU]?)([und%])|\{([LU]?)(user|username|domain|home)\})")
_LONG = {"user": "u", "username": "n", "domain": "d", "home": "h"}
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f:]")


class UsernameError(ValueError):
    """A user name that cannot be looked up (control characters, ':')."""


def variables(user, home=""):
    """Return the ``%`` variable table for ``user``."""
    name, _, domain = user.partition("@")
    return {"u": user, "n": name, "d": domain, "h": home, "%": "%"}


def expand(template, user, escape=None, home=""):
    """Expand ``%u``, ``%n``, ``%d`` (and ``%L``/``%U`` forms) in ``template`` for ``user``.

    Args:
        template: text with variables.
        user: the (normalised) user name.
        escape: applied to every substituted value (SQL quoting), not to ``%%``.
        home: the value of ``%h``.
    """
    table = variables(user, home)

    def replace(match):
        modifier, key = (match.group(1), match.group(2)) if match.group(2) else (match.group(3), _LONG[match.group(4)])
        value = table[key]
        if modifier == "L":
            value = value.lower()
        elif modifier == "U":
            value = value.upper()
        if escape is not None and key != "%":
            value = escape(value)
        return value

    return _VAR_RE.sub(replace, template)


def normalise(user, username_format="%Lu", default_realm=""):
    """Return the user name as lookups see it.

    Raises:
        UsernameError: for names with control characters or ``:``, which
            passwd-files and log lines cannot carry.
    """
    if _BAD_CHARS.search(user):
        raise UsernameError("username contains disallowed characters")
    if default_realm and "@" not in user:
        user = "%s@%s" % (user, default_realm)
    return expand(username_format or "%u", user)
