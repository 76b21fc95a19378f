# -*- test-case-name: tests.auth.test_passdb -*-
"""What every passdb driver returns, and how "unknown user" stays apart from failure.

A driver's ``lookup(user)`` is a coroutine returning a
:class:`PassdbEntry`, or None when the user does not exist; it raises
:class:`PassdbError` when it cannot answer (file unreadable, SQL error).
That is Dovecot's ``PASSDB_RESULT_USER_UNKNOWN`` versus
``PASSDB_RESULT_INTERNAL_FAILURE``: the first is the client's problem, the
second ours, and clients get a temporary error for it.

Drivers also say whether they can hand out credentials
(``credentials_lookup``); mechanisms such as CRAM-MD5 need that.
"""

from dataclasses import dataclass, field
from typing import Optional


class PassdbError(Exception):
    """The passdb or userdb could not answer (an internal failure, not an unknown user)."""


class DriverArgsError(ValueError):
    """Bad ``driver:args`` in main.cf; the message says why."""


@dataclass(frozen=True)
class PassdbEntry:
    """A user found in a passdb.

    Attributes:
        user: the user name the passdb knows (it may differ in case).
        password: the stored password with optional ``{SCHEME}`` prefix, or
            None when the passdb has none (``nopassword``).
        fields: extra fields (``nopassword``, ``allow_nets``, ``userdb_*``...).
        default_scheme: the scheme for a password without prefix, when the
            driver sets one (``scheme=`` argument), else None.
    """

    user: str
    password: Optional[str]
    fields: dict = field(default_factory=dict)
    default_scheme: Optional[str] = None

    def __repr__(self):
        return "PassdbEntry(user=%r, fields=%r)" % (self.user, sorted(self.fields))

    def size(self):
        """An estimate of the memory the entry takes, for the auth cache."""
        return 64 + len(self.user) + len(self.password or "") + sum(len(k) + len(v) for k, v in self.fields.items())


def parse_extra_fields(text):
    """Parse Dovecot extra fields ``name=value name2 ...`` into a dict (a bare name maps to "")."""
    result = {}
    for word in text.split():
        name, _, value = word.partition("=")
        if name:
            result[name] = value
    return result


def parse_args(args, known):
    """Split driver args ``key=value ... [path]`` into (options, rest).

    ``known`` lists the option names the driver accepts; the first word
    that is not ``known=...`` starts the rest (a path, or static fields).

    Raises:
        DriverArgsError: never for unknown words; they belong to the rest.
    """
    options = {}
    words = args.split()
    while words:
        name, eq, value = words[0].partition("=")
        if not eq or name not in known:
            break
        options[name] = value
        words.pop(0)
    return options, " ".join(words)


@dataclass(frozen=True)
class DriverContext:
    """What drivers get from the auth service.

    Attributes:
        config: the main.cf :class:`~mailstack.config.maincf.Config`.
        run_in_thread: ``(fn, *args) -> Deferred`` running blocking I/O off the reactor thread.
    """

    config: object
    run_in_thread: object
