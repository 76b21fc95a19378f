# -*- test-case-name: tests.imapd.test_idle -*-
"""IDLE (RFC 2177): push of mailbox changes while the client waits.

While a session idles, the selected mailbox's store listener
(:meth:`IMAPServer.mailbox_changed`) sends EXISTS, EXPUNGE and FETCH FLAGS
the moment the store announces a change: a local delivery or another
session in this process at once, another process's change as soon as the
store's folder watch (inotify, else polling every
``mailbox_idle_check_interval``) sees it.  The autologout timer
(``imap_idle_timeout``) is suspended; instead ``* OK Still here`` is sent
every ``imapd_idle_notify_interval``, which also finds dead peers.
"""

from twisted.internet import task

from mailstack.imapd.errors import Bad


async def idle(session, tag, cursor, uid):
    cursor.end()
    session.continuation(b"idling")
    session.idling = True
    session.setTimeout(None)
    keepalive = task.LoopingCall(session.untagged, b"OK Still here")
    keepalive.clock = session.reactor
    keepalive.start(session.config["imapd_idle_notify_interval"], now=False)
    try:
        if session.selected is not None:
            session.selected.send_updates(session)
            waiting = session.read_line()
            await session.poll(send=True)
            line = await waiting
        else:
            line = await session.read_line()
    finally:
        keepalive.stop()
        session.idling = False
        if not session.transport.disconnecting:
            session.setTimeout(session.config["imap_idle_timeout"])
    if line.upper() != b"DONE":
        raise Bad("Expected DONE.")
    return b"Idle completed."
