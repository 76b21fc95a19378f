# -*- test-case-name: tests.imapd.test_session -*-
"""Commands valid in any state: CAPABILITY, NOOP, LOGOUT, ID, ENABLE, STARTTLS.

RFC 3501 §6.1 (CAPABILITY, NOOP, LOGOUT), §6.2.1 (STARTTLS), RFC 2971 (ID),
RFC 5161 (ENABLE).  STARTTLS uses the ``ssl_cert``/``ssl_key`` material
the service was built with; after it, the capability list is sent again
only on request, as RFC 3501 §6.2.1 requires the client to ask.
"""

from mailstack.imapd.errors import Bad, No
from mailstack.imapd.syntax import quote

# ENABLE (RFC 5161) only turns on what the server implements; none of the
# extensions we offer needs enabling, so ENABLE reports nothing enabled.
ENABLEABLE = frozenset()


async def capability(session, tag, cursor, uid):
    cursor.end()
    session.untagged(b"CAPABILITY " + b" ".join(session.capability_list()))
    return b"Pre-login capabilities listed, post-login capabilities have more." \
        if session.state == "unauth" else b"Capability completed."


async def noop(session, tag, cursor, uid):
    cursor.end()
    await session.poll()
    return b"NOOP completed."


async def logout(session, tag, cursor, uid):
    cursor.end()
    session.state = "logout"
    session.untagged(b"BYE Logging out")
    session.send_raw(tag + b" OK Logout completed.\r\n")
    session.transport.loseConnection()
    return None


async def id_(session, tag, cursor, uid):
    """RFC 2971: the client's fields are logged; we answer with our name and version."""
    from mailstack import __version__
    cursor.sp()
    if not cursor.skip(b"NIL"):
        cursor.expect(b"(")
        fields = []
        while not cursor.skip(b")"):
            if fields:
                cursor.sp()
            fields.append(cursor.nstring())
        if len(fields) % 2 or len(fields) > 60:
            raise Bad("Invalid ID parameters")
        session.client_id = {fields[i].decode("utf-8", "replace"): (fields[i + 1] or b"").decode("utf-8", "replace")
                             for i in range(0, len(fields), 2) if fields[i] is not None}
    cursor.end()
    session.untagged(b'ID ("name" "mailstack" "version" ' + quote(__version__) + b")")
    return b"ID completed."


async def enable(session, tag, cursor, uid):
    names = []
    while cursor.skip(b" "):
        names.append(cursor.atom().upper())
    cursor.end()
    if not names:
        raise Bad("Missing capability names")
    enabled = [name for name in names if name in ENABLEABLE and name not in session.enabled]
    session.enabled.update(enabled)
    session.untagged(b" ".join([b"ENABLED"] + enabled))
    return b"Enabled."


async def starttls(session, tag, cursor, uid):
    cursor.end()
    if session.tls or session.startedTLS:
        raise Bad("TLS is already active.")
    if not session.canStartTLS:
        raise No("TLS support isn't enabled.")
    # RFC 3501 §6.2.1: commands pipelined after STARTTLS were sent in the
    # clear and must not be executed over TLS (command injection).
    session.discard_pipelined()
    session.send_raw(tag + b" OK Begin TLS negotiation now.\r\n")
    session.transport.startTLS(session.ctx)
    session.startedTLS = True
    return None
