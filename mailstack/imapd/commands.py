# -*- test-case-name: tests.imapd.test_session -*-
"""The dispatch table: every IMAP command, the states it is valid in, its handler.

One place lists them all (STYLE §3, mox ``stateCommands``), instead of
Twisted's ``<state>_<CMD>`` attributes.  A handler is a coroutine
``handler(session, tag, cursor, uid) -> bytes | None``: it parses its
arguments from the :class:`~mailstack.imapd.syntax.Cursor` (which is
positioned right after the command name), sends untagged responses through
the session, and returns the text of the tagged ``OK`` (or None when it
replied itself).  It raises :class:`~mailstack.imapd.errors.No` or
:class:`~mailstack.imapd.errors.Bad` for the other outcomes.

Command families live in their own modules: :mod:`.session_cmds` (any
state), :mod:`.login`, :mod:`.mailboxes`, :mod:`.select`, :mod:`.messages`
(APPEND, STORE, COPY, MOVE, EXPUNGE), :mod:`.fetch`, :mod:`.search` and
:mod:`.idle`.
"""

from dataclasses import dataclass
from typing import Callable

from mailstack.imapd import fetch, idle, login, mailboxes, messages, search, select, session_cmds

ANY = frozenset(("unauth", "auth", "select"))
UNAUTH = frozenset(("unauth",))
AUTH = frozenset(("auth", "select"))
SELECTED = frozenset(("select",))


@dataclass(frozen=True)
class Command:
    """One entry of the dispatch table.

    Attributes:
        name: the command name, upper case.
        states: the session states the command is valid in (RFC 3501 §6).
        handler: the coroutine that runs it.
        uid: whether a ``UID`` form exists (RFC 3501 §6.4.8, RFC 4315, RFC 6851).
        sync: whether pending mailbox changes are reported before the tagged OK.
        expunge_ok: whether EXPUNGE responses may be sent with it
            (RFC 3501 §7.4.1 forbids them during FETCH, STORE and SEARCH,
            but not during their UID forms).
    """

    name: bytes
    states: frozenset
    handler: Callable
    uid: bool = False
    sync: bool = True
    expunge_ok: bool = True


_TABLE = (
    # any state (RFC 3501 §6.1)
    Command(b"CAPABILITY", ANY, session_cmds.capability, sync=False),
    Command(b"NOOP", ANY, session_cmds.noop),
    Command(b"LOGOUT", ANY, session_cmds.logout),
    Command(b"ID", ANY, session_cmds.id_),                        # RFC 2971
    # not authenticated (§6.2)
    Command(b"STARTTLS", UNAUTH, session_cmds.starttls),
    Command(b"LOGIN", UNAUTH, login.login),
    Command(b"AUTHENTICATE", UNAUTH, login.authenticate),
    # authenticated (§6.3)
    Command(b"ENABLE", AUTH, session_cmds.enable),                # RFC 5161
    Command(b"SELECT", AUTH, select.select),
    Command(b"EXAMINE", AUTH, select.examine),
    Command(b"CREATE", AUTH, mailboxes.create),
    Command(b"DELETE", AUTH, mailboxes.delete),
    Command(b"RENAME", AUTH, mailboxes.rename),
    Command(b"SUBSCRIBE", AUTH, mailboxes.subscribe),
    Command(b"UNSUBSCRIBE", AUTH, mailboxes.unsubscribe),
    Command(b"LIST", AUTH, mailboxes.list_),
    Command(b"LSUB", AUTH, mailboxes.lsub),
    Command(b"STATUS", AUTH, mailboxes.status),
    Command(b"NAMESPACE", AUTH, mailboxes.namespace),             # RFC 2342
    Command(b"APPEND", AUTH, messages.append),
    Command(b"IDLE", AUTH, idle.idle, sync=False),                # RFC 2177
    # selected (§6.4)
    Command(b"CHECK", SELECTED, select.check),
    Command(b"CLOSE", SELECTED, select.close, sync=False),
    Command(b"UNSELECT", SELECTED, select.unselect, sync=False),  # RFC 3691
    Command(b"EXPUNGE", SELECTED, messages.expunge, uid=True),    # UID EXPUNGE: RFC 4315
    Command(b"SEARCH", SELECTED, search.search, uid=True, expunge_ok=False),
    Command(b"FETCH", SELECTED, fetch.fetch, uid=True, expunge_ok=False),
    Command(b"STORE", SELECTED, messages.store, uid=True, expunge_ok=False),
    Command(b"COPY", SELECTED, messages.copy, uid=True),
    Command(b"MOVE", SELECTED, messages.move, uid=True),          # RFC 6851
)

COMMANDS = {command.name: command for command in _TABLE}

if len(COMMANDS) != len(_TABLE):
    raise RuntimeError("an IMAP command is declared twice")


def lookup(name, uid=False):
    """Return the :class:`Command` called ``name`` (with ``UID`` when ``uid``), or None."""
    command = COMMANDS.get(name)
    if command is None or (uid and not command.uid):
        return None
    return command


# RFC 3501 §7.2.1 and the extensions above; AUTH= and LOGINDISABLED depend on the connection.
_BASE = [b"IMAP4rev1", b"SASL-IR", b"LITERAL+", b"ID", b"ENABLE", b"IDLE"]
_AFTER_LOGIN = [b"NAMESPACE", b"UIDPLUS", b"MOVE", b"UNSELECT", b"CHILDREN", b"SPECIAL-USE",
                b"APPENDLIMIT"]


def capabilities(session):
    """Return the capability atoms for ``session`` in its current state."""
    caps = list(_BASE)
    if session.state == "unauth":
        if session.canStartTLS and not session.startedTLS:
            caps.append(b"STARTTLS")
        secure = session.secure
        if not secure and session.config["disable_plaintext_auth"]:
            caps.append(b"LOGINDISABLED")
        caps.extend(b"AUTH=" + mech.encode("ascii") for mech in session.factory.mechanisms(secure))
    else:
        caps.extend(_AFTER_LOGIN)
        caps[-1] = b"APPENDLIMIT=%d" % session.config["message_size_limit"]
    return caps


def state_reason(command, state):
    """Return why ``command`` is not valid in ``state`` (the text of the BAD reply)."""
    if state == "unauth":
        return "Not authenticated."
    if command.states == UNAUTH:
        return "Already authenticated."
    if command.states == SELECTED:
        return "No mailbox selected."
    return "Not allowed now."
