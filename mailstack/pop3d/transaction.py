# -*- test-case-name: tests.pop3d.test_commands -*-
"""POP3 TRANSACTION and UPDATE states: STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP, QUIT.

The session works on a snapshot of INBOX taken at login
(:class:`~mailstack.pop3d.maildrop.Maildrop`): message numbers, sizes and
UIDLs do not change during a session, whatever IMAP or delivery do
meanwhile (RFC 1939 §5).  DELE only marks; the deletions are made through
the store when QUIT moves the session to UPDATE, so that IMAP sessions on
the folder learn of them, and a connection that drops without QUIT deletes
nothing (RFC 1939 §6).  Messages retrieved with RETR are flagged ``\\Seen``
at the same time, as Dovecot does.

Sizes are the CRLF sizes of the messages (Dovecot's virtual size) and are
exactly what RETR sends before byte-stuffing.  RETR of a message up to
:data:`SMALL_MESSAGE` bytes is read and sent in one write; a bigger one is
streamed chunk by chunk, paced by the transport (the protocol is its
streaming producer), so memory stays bounded.

A message expunged by another session (IMAP) after the snapshot answers
``-ERR [SYS/TEMP]`` to RETR and TOP.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from mailstack.pop3d.errors import Reply
from mailstack.pop3d.maildrop import MessageGone
from mailstack.pop3d.transfer import CHUNK, Stuffer, stuff, top_lines

log = Logger(namespace="mailstack.pop3d")

SMALL_MESSAGE = 256 * 1024


class TransactionCommands:
    """The TRANSACTION-state half of :class:`~mailstack.pop3d.protocol.POP3Server`."""

    def transaction_init(self):
        self._drop = None
        self._lock = None
        self._deleted = set()
        self._seen = set()
        self._stream = None
        self._stats = {"top": 0, "top_bytes": 0, "retr": 0, "retr_bytes": 0, "expunged": 0}

    def enter_transaction(self, drop, lock):
        """Start the TRANSACTION state on an opened maildrop and its session lock."""
        self._drop, self._lock = drop, lock

    def transaction_close(self):
        """Release everything the session holds (on disconnect, with or without QUIT)."""
        if self._stream is not None:
            self._stream[0].close()
            self._stream = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._drop is not None:
            self._drop.close()
            self._drop = None

    # -- helpers ---------------------------------------------------------------

    def _message(self, word):
        """Return the 0-based index for message number ``word``, or raise Reply."""
        if not word:
            raise Reply("-ERR Message number missing.")
        if not word.isdigit() or len(word) > 10:
            raise Reply("-ERR Invalid message number: %s" % word[:40])
        number = int(word)
        if number < 1 or number > self._drop.count:
            raise Reply("-ERR There's no message %d." % number)
        if number - 1 in self._deleted:
            raise Reply("-ERR Message is deleted.")
        return number - 1

    def _open(self, index, then):
        """Open message ``index`` and call ``then(index, handle)``; return None or an awaitable."""
        handle = self._drop.open_message(index)
        if not isinstance(handle, Deferred):
            then(index, handle)
            return None
        return self._open_later(index, handle, then)

    async def _open_later(self, index, deferred, then):
        try:
            handle = await deferred
        except MessageGone:
            raise Reply("-ERR [SYS/TEMP] Message was expunged by another session.") from None
        then(index, handle)

    def _live(self):
        return [i for i in range(self._drop.count) if i not in self._deleted]

    # -- commands ----------------------------------------------------------------

    def do_STAT(self, args):
        drop = self._drop
        deleted_size = sum(drop.size(i) for i in self._deleted)
        self.send("+OK %d %d" % (drop.count - len(self._deleted), drop.total_size - deleted_size))

    def do_LIST(self, args):
        if args.strip():
            index = self._message(args.strip())
            self.send("+OK %d %d" % (index + 1, self._drop.size(index)))
            return
        live, size = self._live(), self._drop.size
        self.send_multiline("+OK %d messages:" % len(live), [b"%d %d" % (i + 1, size(i)) for i in live])

    def do_UIDL(self, args):
        if args.strip():
            index = self._message(args.strip())
            self.send("+OK %d %s" % (index + 1, self._drop.uidl(index)))
            return
        uidl = self._drop.uidl
        self.send_multiline("+OK", [("%d %s" % (i + 1, uidl(i))).encode("ascii") for i in self._live()])

    def do_RETR(self, args):
        index = self._message(args.strip())
        if self._drop.size(index) <= SMALL_MESSAGE:
            data = self._drop.read_message(index)
            if isinstance(data, Deferred):
                return self._retr_later(index, data)
            self._retr_small(index, data)
            return None
        return self._open(index, self._retr_stream)

    async def _retr_later(self, index, deferred):
        try:
            data = await deferred
        except MessageGone:
            raise Reply("-ERR [SYS/TEMP] Message was expunged by another session.") from None
        self._retr_small(index, data)

    def _retr_small(self, index, data):
        self._seen.add(index)
        self._stats["retr"] += 1
        data = stuff(data)
        self._stats["retr_bytes"] += len(data)
        self.write(b"+OK %d octets\r\n" % self._drop.size(index) + data)

    def _retr_stream(self, index, handle):
        self._seen.add(index)
        self._stats["retr"] += 1
        head = b"+OK %d octets\r\n" % self._drop.size(index)
        self.write(head)
        self._stats["retr_bytes"] += len(head)
        self._stream = (handle, Stuffer(), index)
        self.hold()
        self.pump_output()

    def pump_output(self):
        """Send more of a streamed message while the transport accepts it.

        Returns:
            True when no message is being streamed any more (commands may go on).
        """
        while self._stream is not None and not self.output_paused:
            handle, stuffer, index = self._stream
            try:
                chunk = handle.read(CHUNK)
            except OSError as err:
                log.error("pop3({user}): read error while sending a message: {error}",
                          user=self.user, error=err, service=self.settings.service)
                self._stream = None
                handle.close()
                self.close()
                return False
            data = stuffer.feed(chunk) if chunk else stuffer.finish()
            self._stats["retr_bytes"] += len(data)
            self.transport.write(data)
            if not chunk:
                handle.close()
                self._stream = None
                if stuffer.octets != self._drop.size(index):
                    log.warn("pop3({user}): message uid {uid}: sent {sent} octets, listed {size}",
                             user=self.user, uid=self._drop.uid(index), sent=stuffer.octets,
                             size=self._drop.size(index),
                             service=self.settings.service)
                self.release()
                return True
        return self._stream is None

    def do_TOP(self, args):
        words = args.split()
        if len(words) != 2:
            raise Reply("-ERR TOP: message number and number of lines expected.")
        index = self._message(words[0])
        if not words[1].isdigit():
            raise Reply("-ERR Invalid number of lines: %s" % words[1][:40])
        return self._open(index, lambda index, handle: self._top(handle, int(words[1])))

    def _top(self, handle, lines):
        with handle:
            data = top_lines(handle, lines)
        self._stats["top"] += 1
        self._stats["top_bytes"] += len(data)
        self.write(b"+OK\r\n" + data)

    def do_DELE(self, args):
        index = self._message(args.strip())
        self._deleted.add(index)
        self.send("+OK Marked to be deleted.")

    def do_RSET(self, args):
        self._deleted.clear()
        self._seen.clear()
        self.send("+OK")

    def do_NOOP(self, args):
        self.send("+OK")

    async def update(self):
        """QUIT in TRANSACTION: the UPDATE state (RFC 1939 §6)."""
        self.state = "UPDATE"
        deleted = sorted(self._deleted)
        seen = sorted(self._seen - self._deleted)
        removed = 0
        try:
            if deleted or seen:
                removed = await self._drop.commit(deleted, seen)
        except Exception:
            log.failure("pop3({user}): could not delete messages", user=self.user,
                        service=self.settings.service)
            self._disconnect_reason = "Disconnected: Logout failed, deletions not done"
            self.send("-ERR [SYS/TEMP] Some deleted messages were not removed.")
            self.close()
            return
        self._stats["expunged"] = removed
        self._disconnect_reason = "Disconnected: Logged out"
        self.send("+OK Logging out, messages deleted." if deleted else "+OK Logging out.")
        self.close()

    # -- logs ------------------------------------------------------------------------

    def log_logout(self, reason):
        """Log the end of a logged-in session, with Dovecot's pop3_logout_format figures."""
        stats = self._stats
        drop = self._drop
        count = drop.count if drop is not None else 0
        size = drop.total_size if drop is not None else 0
        self.log_event("pop3({user}): {reason} top={top}/{top_bytes}, retr={retr}/{retr_bytes}, "
                       "del={expunged}/{count}, size={size}",
                       user=self.user, reason=reason, count=count, size=size, **stats)
