# -*- test-case-name: tests.smtpd.test_relay -*-
"""SMTP access restrictions: the registry, the evaluator and the reject formatter.

A restriction is a name in a list such as ``smtpd_relay_restrictions =
permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination``.
Each name maps to a :class:`Restriction` whose ``check(ctx, args)``
returns a :class:`Verdict`: ``OK`` (permit: stop, accept), ``DUNNO`` (no
opinion: go on with the next name), or a reject/defer carrying its reply.
:func:`evaluate` walks a list; a name listed in ``smtpd_restriction_classes``
is itself a list (Postfix restriction classes) and is walked recursively.
The first verdict other than ``DUNNO`` wins; the end of a list is ``DUNNO``.
:func:`reject_log` builds Postfix's log line for a reject.

Stages and when they run (Postfix ``smtpd_check.c``):

======================  ===========  ============================================
parameter               stage        notes
======================  ===========  ============================================
smtpd_client_restrictions  CONNECT   delayed to RCPT with smtpd_delay_reject
smtpd_helo_restrictions    HELO      delayed to RCPT with smtpd_delay_reject
smtpd_sender_restrictions  MAIL      delayed to RCPT with smtpd_delay_reject
smtpd_relay_restrictions   RCPT      before smtpd_recipient_restrictions
smtpd_recipient_restrictions RCPT
smtpd_data_restrictions    DATA
smtpd_end_of_data_restrictions END-OF-MESSAGE
======================  ===========  ============================================

The anti-spam restriction language (``check_*_access``, ``reject_rbl_client``,
...) plugs in by adding entries to :data:`RESTRICTIONS`; an entry that takes
arguments (``check_client_access type:name``) declares ``nargs``.

Parameters read: ``smtpd_restriction_classes`` (and every list it names),
``smtpd_delay_reject``, ``mynetworks``, ``mydestination``, ``relay_domains``,
``virtual_alias_domains``, ``virtual_mailbox_domains``,
``relay_domains_reject_code``, ``reject_code``, ``defer_code``.
"""

from dataclasses import dataclass
from typing import Callable

from mailstack.common.reply import Reject, reject
from mailstack.config.maincf import ConfigError
from mailstack.config.types import split_list

# The reply texts Postfix uses to say which part of the request was refused.
STAGE_TEXT = {
    "CONNECT": "Client host rejected",
    "HELO": "Helo command rejected",
    "MAIL": "Sender address rejected",
    "RCPT": "Recipient address rejected",
    "DATA": "Data command rejected",
    "END-OF-MESSAGE": "End-of-data rejected",
}


@dataclass(frozen=True)
class Verdict:
    """The result of one restriction.

    Attributes:
        action: ``"OK"``, ``"DUNNO"``, ``"REJECT"`` or ``"DEFER"``.
        reply: the :class:`~mailstack.common.reply.Reject` for REJECT/DEFER.
        restriction: the name that decided (for logs).
    """

    action: str
    reply: Reject = None
    restriction: str = ""


OK = Verdict("OK")
DUNNO = Verdict("DUNNO")


@dataclass(frozen=True)
class Restriction:
    """A registry entry: a restriction name and the function that evaluates it.

    Attributes:
        name: the word used in main.cf.
        check: ``async (ctx, args) -> Verdict`` or a plain function returning one.
        nargs: how many following list words it consumes (``check_client_access type:name`` has 1).
    """

    name: str
    check: Callable
    nargs: int = 0


def _subject(ctx, stage):
    """What a reject names, Postfix style: <recipient>, <sender>, <helo> or host[ip]."""
    if stage == "RCPT":
        return "<%s>" % ctx.recipient
    if stage == "MAIL":
        return "<%s>" % ctx.sender
    if stage == "HELO":
        return "<%s>" % ctx.helo
    if stage in ("DATA", "END-OF-MESSAGE"):
        return "<%s>" % stage
    return "%s[%s]" % (ctx.client_name, ctx.client_address)


def stage_reject(ctx, code, dsn, detail, stage=None):
    """Return a reject verdict whose text is ``<subject>: Stage rejected: detail``."""
    stage = stage or ctx.stage
    text = "%s: %s: %s" % (_subject(ctx, stage), STAGE_TEXT[stage], detail)
    action = "DEFER" if str(code).startswith("4") else "REJECT"
    return Verdict(action, reject(code, dsn, text))


# -- the built-in restrictions --------------------------------------------------


def _permit(ctx, args):
    return OK


def _dunno(ctx, args):
    return DUNNO


def _reject(ctx, args):
    return stage_reject(ctx, ctx.config["reject_code"], "5.7.1", "Access denied")


def _defer(ctx, args):
    return stage_reject(ctx, ctx.config["defer_code"], "4.7.1", "Try again later")


def _permit_mynetworks(ctx, args):
    return OK if ctx.in_mynetworks() else DUNNO


def _permit_sasl_authenticated(ctx, args):
    return OK if ctx.sasl_username else DUNNO


async def _permit_auth_destination(ctx, args):
    return OK if await ctx.is_auth_destination(ctx.recipient) else DUNNO


async def _reject_unauth_destination(ctx, args):
    if await ctx.is_auth_destination(ctx.recipient):
        return DUNNO
    code = ctx.config["relay_domains_reject_code"]
    return Verdict("REJECT", reject(code, "5.7.1", "<%s>: Relay access denied" % ctx.recipient))


async def _defer_unauth_destination(ctx, args):
    if await ctx.is_auth_destination(ctx.recipient):
        return DUNNO
    return Verdict("DEFER", reject(ctx.config["defer_code"], "4.7.1", "<%s>: Relay access denied" % ctx.recipient))


async def _reject_unlisted_recipient(ctx, args):
    failure = await ctx.unlisted_recipient(ctx.recipient)
    return failure if failure is not None else DUNNO


async def _reject_unlisted_sender(ctx, args):
    if not ctx.sender:
        return DUNNO
    failure = await ctx.unlisted_recipient(ctx.sender, stage="MAIL")
    return failure if failure is not None else DUNNO


RESTRICTIONS = {r.name: r for r in (
    Restriction("permit", _permit),
    Restriction("dunno", _dunno),
    Restriction("reject", _reject),
    Restriction("defer", _defer),
    Restriction("permit_mynetworks", _permit_mynetworks),
    Restriction("permit_sasl_authenticated", _permit_sasl_authenticated),
    Restriction("permit_auth_destination", _permit_auth_destination),
    Restriction("reject_unauth_destination", _reject_unauth_destination),
    Restriction("defer_unauth_destination", _defer_unauth_destination),
    Restriction("reject_unlisted_recipient", _reject_unlisted_recipient),
    Restriction("reject_unlisted_sender", _reject_unlisted_sender),
)}


def register(restriction):
    """Add a restriction to the registry (the anti-spam issue's hook).

    Raises:
        ValueError: when the name is already registered.
    """
    if restriction.name in RESTRICTIONS:
        raise ValueError("restriction %s is already registered" % restriction.name)
    RESTRICTIONS[restriction.name] = restriction


def restriction_words(config, parameter):
    """Return the words of a restriction list; restriction classes are site-defined names."""
    value = config.get(parameter) or ()
    return split_list(value) if isinstance(value, str) else list(value)


def validate(config, parameter, _seen=()):
    """Check that every word of restriction list ``parameter`` is known.

    Raises:
        ConfigError: naming the parameter and the unknown word.
    """
    classes = set(config["smtpd_restriction_classes"])
    words = restriction_words(config, parameter)
    i = 0
    while i < len(words):
        word = words[i]
        if word in classes:
            if word not in _seen:
                validate(config, word, _seen + (word,))
        elif word in RESTRICTIONS:
            i += RESTRICTIONS[word].nargs
        else:
            raise ConfigError("%s: unknown restriction %r (known: %s)" % (
                parameter, word, ", ".join(sorted(RESTRICTIONS))))
        i += 1


async def evaluate(ctx, parameter, _depth=0):
    """Walk the restriction list ``parameter``; return the deciding :class:`Verdict`.

    Args:
        ctx: a :class:`~mailstack.smtpd.session.CheckContext`-like object with
            ``config`` and ``stage`` and the facts restrictions look at.
        parameter: the list's parameter name (or a restriction class name).

    Returns:
        the first verdict that is not DUNNO, or DUNNO at the end of the list.
    """
    if _depth > 20:
        raise ConfigError("%s: restriction classes nest too deeply" % parameter)
    classes = ctx.config["smtpd_restriction_classes"]
    words = restriction_words(ctx.config, parameter)
    i = 0
    while i < len(words):
        word = words[i]
        if word in classes:
            verdict = await evaluate(ctx, word, _depth + 1)
            i += 1
        else:
            entry = RESTRICTIONS[word]
            args = words[i + 1:i + 1 + entry.nargs]
            i += 1 + entry.nargs
            verdict = entry.check(ctx, args)
            if hasattr(verdict, "__await__"):
                verdict = await verdict
        if verdict.action != "DUNNO":
            if not verdict.restriction:
                verdict = Verdict(verdict.action, verdict.reply, word)
            return verdict
    return DUNNO


def reject_log(queue_id, stage, ctx, reply, action="reject"):
    """Return Postfix's log line for a refused request.

    ``NOQUEUE: reject: RCPT from host[ip]: 554 5.7.1 <a>: Relay access
    denied; from=<s> to=<a> proto=ESMTP helo=<h>``
    """
    parts = ["%s: %s: %s from %s[%s]: %s;" % (queue_id or "NOQUEUE", action, stage, ctx.client_name,
                                             ctx.client_address, reply.reply())]
    if ctx.sender is not None:
        parts.append("from=<%s>" % ctx.sender)
    if stage == "RCPT" and ctx.recipient is not None:
        parts.append("to=<%s>" % ctx.recipient)
    parts.append("proto=%s" % ctx.proto)
    if ctx.helo:
        parts.append("helo=<%s>" % ctx.helo)
    return " ".join(parts)
