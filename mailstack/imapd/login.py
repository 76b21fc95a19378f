# -*- test-case-name: tests.imapd.test_login -*-
"""LOGIN and AUTHENTICATE (RFC 3501 §6.2.2-3, SASL-IR RFC 4959) through the auth service.

Passwords never reach this module's logic beyond being handed to
:meth:`AuthService.verify_plain`; SASL conversations are run by
:meth:`AuthService.start` sessions, which know the mechanisms.  The auth
service delays failures itself, so we simply await its answer.

Plaintext logins (LOGIN, and the plaintext mechanisms, which the auth
service leaves out of its list) are refused with ``[PRIVACYREQUIRED]`` on
a connection that is neither TLS nor counted as secure (loopback,
``login_trusted_networks``) while ``disable_plaintext_auth = yes``; the
capability list then says ``LOGINDISABLED`` (RFC 3501 §6.2.3).  After
``imapd_max_auth_attempts`` failures the connection is closed, as Dovecot
does.
"""

import base64
import binascii

from mailstack.imapd.errors import Bad, No

PRIVACY_TEXT = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."


async def login(session, tag, cursor, uid):
    cursor.sp()
    user = cursor.astring()
    cursor.sp()
    password = cursor.astring()
    cursor.end()
    if not session.secure and session.config["disable_plaintext_auth"]:
        raise No(PRIVACY_TEXT, "PRIVACYREQUIRED")
    session.login_name = user.decode("utf-8", "replace")
    step = await session.factory.auth.verify_plain(
        session.login_name, password.decode("utf-8", "replace"), session.factory.auth_request(session))
    return await _finish(session, step, "PLAIN")


async def authenticate(session, tag, cursor, uid):
    cursor.sp()
    mechanism = cursor.atom().upper().decode("ascii")
    initial = None
    if cursor.skip(b" "):
        raw = cursor.rest()
        initial = b"" if raw == b"=" else _decode(raw)
    cursor.end()
    secure = session.secure
    offered = session.factory.mechanisms(secure)
    if mechanism not in offered:
        if mechanism in session.factory.mechanisms(True):
            raise No(PRIVACY_TEXT, "PRIVACYREQUIRED")
        raise No("Unsupported authentication mechanism.")
    auth = session.factory.auth
    try:
        sasl = auth.start(mechanism, session.factory.auth_request(session))
    except session.factory.UnknownMechanism:
        raise No("Unsupported authentication mechanism.") from None
    response = initial
    while True:
        step = await sasl.step(response)
        if step.kind != "continue":
            break
        session.continuation(base64.b64encode(step.challenge))
        line = await session.read_line()
        if line == b"*":
            raise Bad("Authentication aborted by client.")
        response = _decode(line)
    if step.kind == "success" and step.challenge:
        # RFC 3501 §6.2.2: final server data travels as one more challenge,
        # answered by an empty line.
        session.continuation(base64.b64encode(step.challenge))
        line = await session.read_line()
        if line == b"*":
            raise Bad("Authentication aborted by client.")
    return await _finish(session, step, mechanism)


def _decode(data):
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Bad("Invalid base64 data in continued response") from None


async def _finish(session, step, method):
    if step.kind != "success":
        session.auth_attempts += 1
        session.log_login("Login failed", method, "attempt %d" % session.auth_attempts)
        if session.auth_attempts >= session.config["imapd_max_auth_attempts"]:
            session.untagged(b"BYE Too many invalid authentication attempts.")
            session.transport.loseConnection()
        if step.temporary:
            raise No("Temporary authentication failure.", "UNAVAILABLE")
        raise No("Authentication failed.", "AUTHENTICATIONFAILED")
    try:
        account = await session.factory.open_account(step.user)
    except LookupError as err:
        session.log_login("Login failed", method, "userdb: %s" % err)
        raise No("Temporary authentication failure.", "UNAVAILABLE") from None
    session.logged_in(step.user, account, method)
    return b"[CAPABILITY " + b" ".join(session.capability_list()) + b"] Logged in"
