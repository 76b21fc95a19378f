# -*- test-case-name: tests.cleanup.test_cleanup -*-
"""cleanup: the last stop before the queue (Postfix cleanup(8), in-process).

SYNOPSIS
    ``cleanup = Cleanup(config, queue, tables, reactor, auth=None)``;
    ``writer = cleanup.open_writer()``; ``writer.begin(envelope, tls_summary)``;
    ``writer.write(bytes)``
    as content streams; ``queue_id = await writer.finish(envelope)``, or
    ``writer.abort()``.

DESCRIPTION
    :meth:`Cleanup.open` creates the queue file in a thread (the queue id
    is known from then on); :meth:`CleanupWriter.begin` writes the
    ``Received:`` header the way Postfix's smtpd does.  Content then streams through
    :class:`~mailstack.cleanup.headers.HeaderStream`, which holds only the
    header block (at most ``header_size_limit`` bytes).  When the client is
    one of ``local_header_rewrite_clients`` it rewrites the addresses in
    From:, To:, Cc: and the like (trivial-rewrite, canonical maps that answer
    from memory, masquerading) and adds the missing ``Message-ID:``,
    ``Date:``, ``From:`` and ``To:`` headers (added for every client with
    ``always_add_missing_headers``).
    A message with ``hopcount_limit`` or more ``Received:`` headers (the one
    added here included) is refused with ``554 5.4.0 Error: too many hops``.
    :meth:`CleanupWriter.finish` rewrites the envelope
    (:mod:`mailstack.cleanup.rewrite`: trivial-rewrite, canonical,
    masquerade, virtual aliases, BCC), logs ``QUEUEID: message-id=<...>``
    and commits the file through the queue's API, which fsyncs it: when
    ``finish`` returns, the caller may answer 250.

PARAMETERS
    myhostname, mail_name, header_size_limit, hopcount_limit, always_add_missing_headers,
    local_header_rewrite_clients, undisclosed_recipients_header,
    inet_interfaces, mynetworks and those of :mod:`mailstack.cleanup.rewrite`.

FILES
    ``$queue_directory/incoming/`` through :mod:`mailstack.queue`.
"""

import email.utils
import ipaddress
import time

from twisted.internet import defer
from twisted.logger import Logger

from mailstack.cleanup.headers import HeaderStream, field_addresses, rewrite_address_fields
from mailstack.cleanup.rewrite import AddressRewriter
from mailstack.common.address import quote_address
from mailstack.common.reply import PermanentReject
from mailstack.queue import Recipient

log = Logger(namespace="mailstack.cleanup")

# Header fields whose addresses are rewritten, by masquerade/canonical class.
__all__ = ["Cleanup", "CleanupWriter", "AddressRewriter"]


class Cleanup:
    """Message intake for one service configuration.

    Args:
        config: the service's configuration.
        queue: the :class:`~mailstack.queue.MailQueue`.
        tables: the process's :class:`~mailstack.tables.registry.Tables`.
        reactor: the reactor (clock for Date:/Received:).
        auth: unused by cleanup itself; kept for symmetry with the SMTP server.
    """

    def __init__(self, config, queue, tables, reactor, auth=None):
        self.config = config
        self.queue = queue
        self.reactor = reactor
        self.rewriter = AddressRewriter(config, tables)
        self._local_addresses = None

    def open_writer(self):
        """Start a new message; return its :class:`CleanupWriter` (no I/O: nothing to wait for).

        Call :meth:`CleanupWriter.begin` with the envelope before writing content.

        No file is created yet: the content stays in memory until it is
        larger than one write chunk or the message is committed, so a small
        message is written, fsynced and renamed in one step at the end of
        data (see :meth:`mailstack.queue.QueueFileWriter.commit`).
        """
        return CleanupWriter(self, self.queue.new_message(create=False))

    def now(self):
        return self.reactor.seconds() if hasattr(self.reactor, "seconds") else time.time()

    def adds_missing_headers(self, envelope):
        """Whether this message gets missing headers (always_add_missing_headers or a local client)."""
        return self.config["always_add_missing_headers"] or self.is_local_header_client(envelope)

    def is_local_header_client(self, envelope):
        """Whether the client matches local_header_rewrite_clients (local submission always does)."""
        if not envelope.client_address:
            return True
        for word in self.config["local_header_rewrite_clients"]:
            if word == "permit_sasl_authenticated" and envelope.sasl_username:
                return True
            if word == "permit_inet_interfaces" and self._is_own_address(envelope.client_address):
                return True
            if word == "permit_mynetworks" and _in_list(envelope.client_address, self.config["mynetworks"]):
                return True
        return False

    def _is_own_address(self, address):
        if self._local_addresses is None:
            from mailstack.util import netinfo
            own = {"127.0.0.1", "::1"}
            own.update(str(i.ip) for i in netinfo.interfaces())
            self._local_addresses = own
        return address in self._local_addresses


def _in_list(address, words):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for word in words:
        try:
            if ip in ipaddress.ip_network(word.replace("[", "").replace("]", ""), strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False


class CleanupWriter:
    """One message on its way into the queue.

    Attributes:
        queue_id: assigned when the writer is created.
        size: content bytes received from the client so far.
    """

    def __init__(self, cleanup, queue_file):
        self._cleanup = cleanup
        self._config = cleanup.config
        self._file = queue_file
        self.queue_id = self._file.queue_id
        self._envelope = None
        self._message_id = None
        self._hops = 1  # the Received: header begin() or begin_local() writes
        self._stream = HeaderStream(self._file.write, self._config["header_size_limit"], self._on_headers,
                                    self._rewrite_headers)

    def begin(self, envelope, tls_summary=""):
        """Start the content: remember the envelope and write the ``Received:`` header."""
        self._envelope = envelope
        self._arrival = self._cleanup.now()
        self._file.write(self._received(envelope, tls_summary))

    def begin_local(self, envelope, uid):
        """Start a locally submitted message (sendmail via pickup): Postfix's local ``Received:`` header."""
        self._envelope = envelope
        self._arrival = self._cleanup.now()
        config = self._config
        self._file.write(("Received: by %s (%s, from userid %d)\r\n\tid %s; %s\r\n" % (
            config["myhostname"], config["mail_name"], uid, self.queue_id, self._date())).encode("utf-8"))

    @property
    def size(self):
        return self._stream.size

    def write(self, data):
        """Store a piece of content (CRLF or LF line ends)."""
        self._stream.feed(data)

    def abort(self):
        """Drop the message (nothing is queued)."""
        self._file.abort()
        if self._stream.pending is not None:
            # A header rewrite still looking up addresses writes into a closed
            # file when it ends: nothing to report, the message is gone anyway.
            self._stream.pending.addErrback(lambda failure: None)

    def _date(self):
        return email.utils.formatdate(self._arrival, localtime=True)

    def _received(self, envelope, tls_summary):
        config = self._config
        lines = ["Received: from %s (%s [%s])" % (envelope.helo or envelope.client_name,
                                                   envelope.client_name, envelope.client_address)]
        if tls_summary:
            lines.append("\t" + tls_summary)
        lines.append("\tby %s (%s) with %s id %s" % (config["myhostname"], config["mail_name"],
                                                      envelope.protocol, self.queue_id))
        stamp = self._date()
        if len(envelope.recipients) == 1:
            lines.append("\tfor <%s>; %s" % (quote_address(envelope.recipients[0].address), stamp))
        else:
            lines[-1] += "; " + stamp
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def _on_headers(self, fields):
        self._hops += sum(1 for name, _ in fields if name == "received")
        names = {name for name, _ in fields}
        for name, value in fields:
            if name == "message-id":
                self._message_id = value
                break
        envelope = self._envelope
        if not self._cleanup.adds_missing_headers(envelope):
            return b""
        config = self._config
        added = []
        if "from" not in names:
            sender = envelope.sender or "MAILER-DAEMON"
            added.append("From: %s" % quote_address(self._cleanup.rewriter.trivial(sender))
                         if envelope.sender else "From: MAILER-DAEMON")
        if "date" not in names:
            added.append("Date: %s" % self._date())
        if "message-id" not in names:
            stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(self._arrival))
            self._message_id = "<%s.%s@%s>" % (stamp, self.queue_id, config["myhostname"])
            added.append("Message-Id: %s" % self._message_id)
        if not names & {"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"}:
            if config["undisclosed_recipients_header"]:
                added.append(config["undisclosed_recipients_header"])
        return "".join(line + "\r\n" for line in added).encode("utf-8")

    def _rewrite_headers(self, block):
        """Rewrite addresses in From:, To:, Cc:... for local_header_rewrite_clients (Postfix cleanup).

        With canonical tables that do I/O (sqlite...), the addresses are
        looked up first and a Deferred of the new block is returned; the
        header stream holds the body back until it fires.
        """
        if not self._cleanup.is_local_header_client(self._envelope):
            return block
        rewriter = self._cleanup.rewriter
        if rewriter.headers_synchronous:
            return rewrite_address_fields(block, rewriter.header_address)

        async def lookups():
            mapped = {}
            for address, cls in field_addresses(block):
                mapped[address, cls] = await rewriter.header_address_async(address, cls)
            return rewrite_address_fields(block, lambda address, cls: mapped.get((address, cls), address))
        return defer.ensureDeferred(lookups())

    async def finish(self, envelope):
        """Rewrite the envelope, queue the message durably and return its queue id.

        Raises:
            TemporaryReject: a lookup failed or an alias limit was exceeded (nothing queued).
            QueueError: the queue could not store the message (nothing queued).
        """
        try:
            self._stream.close()
            if self._stream.pending is not None:
                await self._stream.pending   # header addresses looked up in tables that do I/O
            if self._hops >= self._config["hopcount_limit"]:
                # Postfix cleanup: CLEANUP_STAT_HOPS, a mail loop.
                log.info("{queue_id}: reject: too many hops ({hops} Received: headers)",
                         queue_id=self.queue_id, hops=self._hops)
                raise PermanentReject(554, "5.4.0", "Error: too many hops")
            rewritten = await self._rewrite(envelope)
        except BaseException:
            self.abort()
            raise
        log.info("{queue_id}: message-id={message_id}", queue_id=self.queue_id,
                 message_id=self._message_id or "<>")
        return await self._file.commit(rewritten)

    async def _rewrite(self, envelope):
        rewriter = self._cleanup.rewriter
        sender = envelope.sender
        if sender:
            sender = rewriter.trivial(sender)
            sender = await rewriter.canonical(sender, "sender")
            sender = rewriter.masquerade(sender, "envelope_sender")
        recipients, seen = [], set()
        for rcpt in envelope.recipients:
            address = rewriter.trivial(rcpt.address)
            address = await rewriter.canonical(address, "recipient")
            address = rewriter.masquerade(address, "envelope_recipient")
            for final in await rewriter.virtual(address):
                key = (final.lower(), rcpt.notify, rcpt.orcpt)
                if key in seen:
                    continue
                seen.add(key)
                recipients.append(Recipient(final, original=rcpt.original or (rcpt.address if final != rcpt.address else ""),
                                            orcpt=rcpt.orcpt, notify=rcpt.notify))
        for bcc in await rewriter.bcc(sender, [r.address for r in recipients]):
            if all(r.address.lower() != bcc.lower() for r in recipients):
                recipients.append(Recipient(bcc, notify=("NEVER",)))
        envelope.sender = sender
        envelope.recipients = recipients
        return envelope
