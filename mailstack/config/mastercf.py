# -*- test-case-name: tests.config.test_mastercf -*-
"""The master.cf reader: which services run, where they listen, with which overrides.

One service a line::

    # name       endpoint        [program]  [-o name=value ...]
    smtp         tcp:25
    submission   tcp:587         -o smtpd_sasl_auth_enable=yes -o smtpd_tls_security_level=encrypt
    smtps        ssl:465         -o smtpd_sasl_auth_enable=yes
    alt-smtp     tcp:2526        smtpd
    qmgr         -

- *name* is the service name used in log lines (``mailstack/submission``).
- *endpoint* is a Twisted server endpoint string (``tcp:PORT[:interface=ADDR]``,
  ``ssl:PORT``, ``unix:PATH``), or ``-`` for internal services with no listener.
  ``ssl:`` endpoints without ``privateKey=`` get the certificate from main.cf.
- *program* names the protocol; it may be left out when the service name is
  a standard one (``smtp``, ``submission`` and ``smtps`` run ``smtpd``;
  ``pop3``/``pop3s`` run ``pop3d``; ``imap``/``imaps`` run ``imapd``).
- ``-o name=value`` overrides a main.cf parameter for this service only, as
  in Postfix; ``-o { name = value with spaces }`` is accepted too.

As in main.cf, ``#`` starts a comment line and a line that starts with white
space continues the previous one.  Errors are reported as ``master.cf:LINE: reason``.
"""

import os
import re
from dataclasses import dataclass

from mailstack.config.maincf import ConfigError, Setting

# Service names whose program need not be written out.
STANDARD_PROGRAMS = {
    "smtp": "smtpd",
    "submission": "smtpd",
    "smtps": "smtpd",
    "pop3": "pop3d",
    "pop3s": "pop3d",
    "imap": "imapd",
    "imaps": "imapd",
    "qmgr": "qmgr",
    "pickup": "pickup",
    "auth": "auth",
}

_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ServiceEntry:
    """One master.cf service.

    Attributes:
        name: the service name.
        endpoint: the Twisted endpoint string, or None for an internal service.
        program: the protocol that runs it (``smtpd``, ``imapd``...).
        overrides: the ``-o`` settings, as :class:`~mailstack.config.maincf.Setting`.
        line: the line number in master.cf.
    """

    name: str
    endpoint: object
    program: str
    overrides: tuple = ()
    line: int = 0

    @property
    def where(self):
        return "master.cf:%d" % self.line


def _logical_lines(text):
    current = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0].isspace() and current is not None:
            current[1] += " " + stripped
            continue
        if current is not None:
            yield current
        current = [lineno, stripped]
    if current is not None:
        yield current


def _parse_override(words, index, where):
    """Parse the argument of ``-o`` at ``words[index]``; return (Setting, next index)."""
    if index >= len(words):
        raise ConfigError("%s: -o needs name=value" % where)
    word = words[index]
    if word == "{":
        try:
            end = words.index("}", index)
        except ValueError:
            raise ConfigError("%s: missing '}' after -o {" % where) from None
        word = " ".join(words[index + 1:end])
        index = end
    elif word.startswith("{"):
        end = index
        while not words[end].endswith("}"):
            end += 1
            if end >= len(words):
                raise ConfigError("%s: missing '}' after -o {" % where)
        word = " ".join(words[index:end + 1])[1:-1]
        index = end
    name, eq, value = word.partition("=")
    name = name.strip()
    if not eq or not re.match(r"^[A-Za-z0-9_]+$", name):
        raise ConfigError("%s: bad -o argument %r: expected name=value" % (where, word))
    return Setting(name, value.strip(), "master.cf", int(where.rsplit(":", 1)[1])), index + 1


def parse(text):
    """Parse master.cf text into a list of :class:`ServiceEntry`.

    Raises:
        ConfigError: on a malformed line or a duplicate service name.
    """
    entries = []
    seen = set()
    for lineno, line in _logical_lines(text):
        where = "master.cf:%d" % lineno
        words = line.split()
        if len(words) < 2:
            raise ConfigError("%s: expected 'name endpoint [program] [-o name=value ...]'" % where)
        name, endpoint = words[0], words[1]
        if not _SERVICE_RE.match(name):
            raise ConfigError("%s: bad service name %r" % (where, name))
        if name in seen:
            raise ConfigError("%s: duplicate service %r" % (where, name))
        seen.add(name)
        if endpoint != "-" and ":" not in endpoint:
            raise ConfigError("%s: bad endpoint %r: expected a Twisted endpoint such as tcp:25, ssl:465 or -"
                              % (where, endpoint))
        index = 2
        program = None
        if index < len(words) and not words[index].startswith("-"):
            program = words[index]
            index += 1
        overrides = []
        while index < len(words):
            if words[index] != "-o":
                raise ConfigError("%s: unexpected %r: expected -o name=value" % (where, words[index]))
            setting, index = _parse_override(words, index + 1, where)
            overrides.append(setting)
        if program is None:
            program = STANDARD_PROGRAMS.get(name)
            if program is None:
                raise ConfigError("%s: service %r needs a program (one of: %s)"
                                  % (where, name, ", ".join(sorted(set(STANDARD_PROGRAMS.values())))))
        entries.append(ServiceEntry(name, None if endpoint == "-" else endpoint,
                                    program, tuple(overrides), lineno))
    return entries


def load(config_directory):
    """Read ``config_directory/master.cf``.

    Raises:
        ConfigError: when the file is missing or malformed.
    """
    path = os.path.join(config_directory, "master.cf")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise ConfigError("%s: cannot read: %s" % (path, err.strerror or err)) from None
    return parse(text)
