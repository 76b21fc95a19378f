# -*- test-case-name: tests.smtpd.test_protocol -*-
"""Message transfer commands of the SMTP server: DATA and BDAT, into cleanup and the queue.

A mixin of :class:`mailstack.smtpd.protocol.SMTPServerProtocol`; it uses the
session state and reply machinery defined there.

- The queue file is created (in a thread) as soon as the first recipient
  is accepted, as Postfix's smtpd connects to cleanup then; it is removed
  again when the transaction is abandoned.
- DATA content streams through :class:`~mailstack.smtpd.data.DotReader`
  (only ``<CR><LF>.<CR><LF>`` ends it); BDAT chunks (RFC 3030) are copied
  byte for byte, and the bytes of a refused BDAT are still read so the
  session stays in step.
- ``message_size_limit`` is enforced while streaming (RFC 1870 §6): past
  it nothing more is stored, the file is removed, and the end of the
  message is answered ``552 5.3.4 Error: message file too big``.
- With ``smtpd_forbid_bare_newline = yes`` a bare ``<LF>`` in DATA ends the
  session with ``$smtpd_forbid_bare_newline_reject_code 5.5.2``.
- ``smtpd_data_restrictions`` run at DATA, ``smtpd_end_of_data_restrictions``
  once the content is in; only after cleanup has committed (fsynced) the
  file is ``250 2.0.0 Ok: queued as ID`` sent.

Parameters read: message_size_limit, smtpd_forbid_bare_newline and those of
:mod:`mailstack.cleanup`.
"""

from twisted.logger import Logger

from mailstack.common.reply import Reject
from mailstack.queue import Envelope, QueueError
from mailstack.smtpd.data import DotReader

log = Logger(namespace="mailstack.smtpd")


class TransferCommands:
    """DATA and BDAT for :class:`~mailstack.smtpd.protocol.SMTPServerProtocol`."""

    def _transaction_ready(self):
        if self.sender is None:
            return (503, "5.5.1", "Error: need RCPT command")
        if not self.recipients:
            if self.recipient_attempts:
                return (554, "5.5.1", "Error: no valid recipients")
            return (503, "5.5.1", "Error: need RCPT command")
        return None

    def smtp_data(self, arg):
        if arg:
            return (501, "5.5.4", "Syntax: DATA")
        if self._bdat_started:
            return (503, "5.5.1", "Error: DATA after BDAT")
        problem = self._transaction_ready()
        if problem:
            return problem
        return self._start_data()

    async def _start_data(self):
        verdict = await self._stage_checks("DATA")
        if verdict:
            return verdict.reply
        self._open_writer()
        self._reader = DotReader(self._content)
        self._mode = "data"
        return (354, None, "End data with <CR><LF>.<CR><LF>")

    def _prepare_writer(self):
        """Start the message at the first accepted recipient, as Postfix's smtpd connects to cleanup then.

        The queue id exists from here on and the ``QUEUEID: client=`` line is
        logged, as Postfix does; the queue file itself is made at commit.
        """
        if self._pending_writer is None and self._writer is None:
            self._pending_writer = self._writer_opened(self.server.cleanup.open_writer())

    def _writer_opened(self, writer):
        if not self._lost:
            self.queue_id = writer.queue_id
        extra = ""
        if self.sasl_username:
            extra = ", sasl_method=%s, sasl_username=%s" % (self.sasl_method, self.sasl_username)
        log.info("{queue_id}: client={client}{extra}", queue_id=writer.queue_id, client=self.peer,
                 extra=extra, service=self.service)
        return writer

    def _open_writer(self):
        writer, self._pending_writer = self._pending_writer, None
        if writer is None:
            writer = self._writer_opened(self.server.cleanup.open_writer())
        writer.begin(self._envelope(), self._tls_summary())
        self._writer = writer

    def _envelope(self):
        proto = self.proto
        if self.esmtp:
            proto += ("S" if self.tls else "") + ("A" if self.sasl_username else "")
        return Envelope(
            sender=self.sender, recipients=list(self.recipients),
            client_name=self.client_name, client_address=self.client_address, helo=self.helo,
            protocol=proto, sasl_username=self.sasl_username,
            envid=self.mail_params.get("ENVID", ""), ret=self.mail_params.get("RET", ""),
            body_type=self.mail_params.get("BODY", ""), smtputf8=bool(self.mail_params.get("SMTPUTF8")))

    def _tls_summary(self):
        if not self.tls:
            return ""
        try:
            conn = self.transport.getHandle()
            return "(using %s with cipher %s)" % (conn.get_protocol_version_name(), conn.get_cipher_name())
        except Exception:
            return ""

    def _content(self, chunk):
        """Sink for message content (DATA and BDAT)."""
        if self._too_big or self._writer is None:
            return
        if self._size_limit and self._writer.size + len(chunk) > self._size_limit:
            # RFC 1870 §6: stop storing; the end of data is answered 552.
            self._too_big = True
            self._abort_writer_keep_id()
            return
        if self._mode == "data" and b"\n" in chunk and chunk.count(b"\n") != chunk.count(b"\r\n"):
            if self._bare_newline_forbidden():
                self._bare_lf = True
        try:
            self._writer.write(chunk)
        except QueueError as err:
            # The queue file could not take the content (a full disk): read
            # the rest of the message and answer 452/451 at its end.
            self._store_error = err
            self._abort_writer()

    def _abort_writer_keep_id(self):
        self._writer.abort()

    async def _end_of_data(self):
        try:
            if self._bare_lf:
                self._abort_writer()
                self._reset_transaction()
                self._reply_bare_newline()
                return None
            if self._too_big:
                queue_id = self._writer.queue_id
                self._writer = None
                log.info("{queue_id}: reject: size limit exceeded from {client}; from=<{sender}> proto={proto} "
                         "helo=<{helo}>", queue_id=queue_id, client=self.peer, sender=self.sender,
                         proto=self.proto, helo=self.helo, service=self.service)
                self._reset_transaction()
                return (552, "5.3.4", "Error: message file too big")
            verdict = await self._stage_checks("END-OF-MESSAGE")
            if verdict:
                self._abort_writer()
                self._reset_transaction()
                return verdict.reply
            if self._store_error is not None:
                err = self._store_error
                self._reset_transaction()
                return self._queue_failure(err)
            writer, self._writer = self._writer, None
            try:
                queue_id = await writer.finish(self._envelope())
            except Reject as rej:
                self._reset_transaction()
                return rej
            except QueueError as err:
                self._reset_transaction()
                return self._queue_failure(err)
            self._reset_transaction()
            self.junk_count = 0  # Postfix: the junk command count is reset after mail is delivered
            return (250, "2.0.0", "Ok: queued as %s" % queue_id)
        finally:
            self._mode = "command"

    def _queue_failure(self, err):
        """Log a queue write failure and return its reply: 452 4.3.1 for a full disk, else 451 4.3.0."""
        log.warn("{client}: queue file write error: {err}", client=self.peer, err=err, service=self.service)
        if err.enospc:
            return (452, "4.3.1", "Error: insufficient system storage")
        return (451, "4.3.0", "Error: queue file write error")

    def smtp_bdat(self, arg):
        words = arg.split()
        if not words or not words[0].isdigit() or len(words) > 2 or (
                len(words) == 2 and words[1].upper() != "LAST"):
            # The chunk size is unknown: the only safe thing is to hang up.
            self._closing = True
            return (501, "5.5.4", "Syntax: BDAT count [LAST]")
        size, last = int(words[0]), len(words) == 2
        self._bdat_left, self._bdat_last = size, last
        if not self._bdat_started:
            self._bdat_started = True
            problem = self._transaction_ready()
            if problem is None:
                return self._bdat_open()
            self._bdat_failed = problem
        self._mode = "bdat"
        return None

    def _bdat_open(self):
        self._open_writer()
        # The chunk's bytes are read by _process once this command is done.
        self._mode = "bdat"
        return None

    def _bdat_bytes(self):
        take = self._in[:self._bdat_left]
        self._in = self._in[self._bdat_left:]
        self._bdat_left -= len(take)
        if take and self._bdat_failed is None:
            self._content(take)
        if self._bdat_left:
            return
        self._mode = "command"
        if self._bdat_failed is not None:
            problem = self._bdat_failed
            if self._bdat_last:
                self._abort_writer()
                self._reset_transaction()
            self._run(problem, "bdat")
            return
        if not self._bdat_last:
            self._run((250, "2.0.0", "Ok: %d bytes" % (self._writer.size if self._writer else 0)), "bdat")
            return
        self._run(self._end_of_data(), "bdat")
