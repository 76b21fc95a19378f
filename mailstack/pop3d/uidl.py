# -*- test-case-name: tests.pop3d.test_uidl -*-
"""UIDL strings from ``pop3_uidl_format``, Dovecot's way.

A POP3 client remembers which messages it has fetched by their UIDL
(RFC 1939 §7), so a UIDL must never change for a message, across sessions,
restarts and a migration between Dovecot and mailstack.  The store keeps
persistent IMAP UIDs and UIDVALIDITY in ``dovecot-uidlist``; Dovecot's
default ``pop3_uidl_format = %08Xu%08Xv`` builds the UIDL from them, and
so does mailstack, so that clients switching servers re-download nothing.

Variables (Dovecot's): ``%u`` the IMAP UID, ``%v`` the folder's
UIDVALIDITY, ``%g`` the message GUID, ``%f`` the maildir base file name;
``%%`` is a percent sign.  Numeric variables take Dovecot's modifiers: a
width, zero-padded when it begins with ``0``, and ``X`` for hex, which
Dovecot writes in lower case (``%08Xu%08Xv`` gives ``000000016b0402fc``;
a test runs Dovecot's pop3 on the same maildir to keep it so); a width before ``%g`` or ``%f`` keeps that many characters.  A UIDL
never holds a space, so numbers are always padded with zeros.  ``%m`` (an MD5 of the header) is not supported: it would
mean reading every message at login.
"""

import re
from dataclasses import dataclass

_TOKEN_RE = re.compile(r"%(?:(%)|(0?)(\d*)(X?)([A-Za-z]))")

VARIABLES = {"u": "uid", "v": "uidvalidity", "g": "guid", "f": "filename"}
_NUMERIC = ("u", "v")


class UIDLFormatError(ValueError):
    """``pop3_uidl_format`` cannot be used; the message says why."""


@dataclass(frozen=True)
class UIDLFormat:
    """A parsed ``pop3_uidl_format``: call :meth:`format` once per message.

    Attributes:
        pattern: the format text as configured.
    """

    pattern: str

    def __post_init__(self):
        if not self.pattern:
            raise UIDLFormatError("pop3_uidl_format is empty")
        for match in _TOKEN_RE.finditer(self.pattern):
            variable = match.group(5)
            if variable and variable not in VARIABLES:
                raise UIDLFormatError("pop3_uidl_format: unknown variable %%%s (known: %s)"
                                      % (variable, ", ".join("%" + v for v in VARIABLES)))
            if variable and match.group(4) and variable not in _NUMERIC:
                raise UIDLFormatError("pop3_uidl_format: %%X applies to %%u and %%v only")
        if "%" in _TOKEN_RE.sub("", self.pattern):
            raise UIDLFormatError("pop3_uidl_format: a %% is not followed by a variable")
        if "u" not in self.variables() and "g" not in self.variables() and "f" not in self.variables():
            raise UIDLFormatError("pop3_uidl_format must contain %u, %g or %f to tell messages apart")

    def variables(self):
        """Return the set of variable letters the format uses."""
        return {m.group(5) for m in _TOKEN_RE.finditer(self.pattern) if m.group(5)}

    def format(self, uid, uidvalidity, guid="", filename=""):
        """Return the UIDL for one message (a str of printable ASCII).

        Args:
            uid: the message's IMAP UID.
            uidvalidity: the folder's UIDVALIDITY.
            guid: the message GUID (``%g``).
            filename: the maildir base name, without the ``:2,`` info (``%f``).
        """
        template, names = self._compiled()
        values = {"u": uid, "v": uidvalidity, "g": guid, "f": filename}
        return template % tuple(values[name] for name in names)

    def _compiled(self):
        # The pattern as a %-format string and the variables it takes, built once:
        # a mailbox of 100,000 messages formats 100,000 UIDLs.
        cached = self.__dict__.get("_template")
        if cached is not None:
            return cached
        pieces, names, last = [], [], 0
        for match in _TOKEN_RE.finditer(self.pattern):
            pieces.append(self.pattern[last:match.start()].replace("%", "%%"))
            last = match.end()
            if match.group(1):
                pieces.append("%%")
                continue
            width, hexa, variable = match.group(3, 4, 5)
            names.append(variable)
            if variable in _NUMERIC:
                pieces.append("%" + ("0" + width if width else "") + ("x" if hexa else "d"))
            else:
                # Dovecot: a width before a string variable keeps that many characters.
                pieces.append("%" + ("." + width if width else "") + "s")
        pieces.append(self.pattern[last:].replace("%", "%%"))
        cached = ("".join(pieces), tuple(names))
        object.__setattr__(self, "_template", cached)
        return cached
