# -*- test-case-name: tests.queue.test_sendmail -*-
"""``mailstack sendmail``: the Sendmail-compatible submission command (Postfix sendmail(1)).

Reads a message on standard input and queues it through ``maildrop/``
(postdrop semantics): the file is written as ``maildrop/ID.tmp``,
fsynced, renamed to ``maildrop/ID`` and the directory fsynced, so a
submission works while the server is stopped; the ``pickup`` service
moves it into the queue when it runs.

Options: recipients as arguments; ``-t`` takes recipients from the To:,
Cc: and Bcc: headers (and removes Bcc:); ``-f sender`` sets the envelope
sender (``<>`` for the null sender; default: the login name at
``$myorigin``); ``-F name`` the full name in a From: header that is
added; ``-i``/``-oi``: a line with a single dot does not end the message;
``-q``: flush the queue (``postqueue -f``); ``-bp``: list the queue
(``mailq``); ``-bs``: speak SMTP on standard input and output, through
mailstack's own SMTP server code (restrictions, cleanup, the queue API),
as a client at 127.0.0.1.

The ``pickup`` service passes the message through cleanup, which rewrites
the envelope (canonical, virtual aliases, masquerading...) and adds the
missing ``From:``, ``Date:`` and ``Message-ID:`` headers and a
``Received: by HOST (mailstack, from userid UID)`` line on top, as
Postfix's cleanup does for local submissions.
"""

import email.utils
import getpass
import os
import sys
import time
from email.parser import BytesHeaderParser
from email.policy import SMTP

from mailstack.admin import queue as tools
from mailstack.common.queue_id import new_queue_id
from mailstack.config import maincf
from mailstack.queue import qfile
from mailstack.queue.envelope import Envelope, Recipient
from mailstack.util.atomic import fsync_directory

DESCRIPTION = __doc__.split("\n", 2)[2]


def add_arguments(parser):
    parser.add_argument("-t", dest="extract", action="store_true", help="take recipients from the headers")
    parser.add_argument("-f", "-r", dest="sender", help="the envelope sender")
    parser.add_argument("-F", dest="full_name", help="the sender's full name")
    parser.add_argument("-i", dest="ignore_dots", action="store_true", help="a lone dot does not end the message")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPTION",
                        help="sendmail options; -oi is -i, others are ignored")
    parser.add_argument("-b", dest="mode", default="m", help="mode: m (deliver, default), p (mailq), s (unsupported)")
    parser.add_argument("-q", dest="flush", action="store_true", help="flush the queue")
    parser.add_argument("-N", dest="dsn_notify", help="DSN notify: never, or success,delay,failure")
    parser.add_argument("-V", dest="envid", help="DSN envelope id")
    parser.add_argument("recipients", nargs="*")


def _addresses(values):
    return [address for _, address in email.utils.getaddresses(values) if address]


def prepare(data, config, sender, full_name, extract, uid, queue_id, now):
    """Return (content, recipients_from_headers) with the headers cleanup adds for local mail."""
    data = data.replace(b"\r\n", b"\n")
    end = data.find(b"\n\n")
    if end < 0:
        head, body = (data, b"") if data.strip() and b":" in data.split(b"\n", 1)[0] else (b"", data)
    else:
        head, body = data[:end + 1], data[end + 2:]
    headers = BytesHeaderParser(policy=SMTP).parsebytes(head + b"\n")
    found = []
    if extract:
        found = _addresses(headers.get_all("To", []) + headers.get_all("Cc", []) + headers.get_all("Bcc", []))
        if "Bcc" in headers:
            kept = []
            skipping = False
            for line in head.split(b"\n"):
                if line[:4].lower() == b"bcc:":
                    skipping = True
                    continue
                if skipping and line[:1] in (b" ", b"\t"):
                    continue
                skipping = False
                kept.append(line)
            head = b"\n".join(kept)
    # pickup passes the message through cleanup, which adds Received:, Date:,
    # Message-ID: and a plain From: as Postfix's does; only the full name of
    # -F is sendmail's to add.
    added = []
    if "From" not in headers and full_name:
        added.append(b"From: %s\n" % email.utils.formataddr((full_name, sender or "MAILER-DAEMON")).encode("utf-8"))
    head = head.rstrip(b"\n") + b"\n" if head.strip() else b""
    content = head + b"".join(added) + b"\n" + body
    return content, found


def read_message(stream, ignore_dots):
    """Read the message from ``stream`` (bytes) until EOF, or a lone dot unless ``ignore_dots``."""
    if ignore_dots:
        return stream.read()
    lines = []
    for line in stream:
        if line.rstrip(b"\r\n") == b".":
            break
        lines.append(line)
    return b"".join(lines)


def submit(config, content_stream, recipients, sender=None, full_name=None, extract=False, ignore_dots=False,
           notify=(), envid=""):
    """Queue a message into maildrop/; return its queue id.

    Raises:
        ValueError: when there are no recipients.
        OSError: when the queue cannot be written.
    """
    uid = os.getuid()
    if sender is None:
        sender = "%s@%s" % (_login(), config["myorigin"])
    if sender == "<>":
        sender = ""
    queue_id = new_queue_id()
    now = time.time()
    data = read_message(content_stream, ignore_dots)
    content, extracted = prepare(data, config, sender, full_name, extract, uid, queue_id, now)
    all_recipients = list(recipients) + extracted
    if not all_recipients:
        raise ValueError("no recipient addresses found in message header")
    qualified = [r if "@" in r else "%s@%s" % (r, config["myorigin"]) for r in all_recipients]
    envelope = Envelope(sender, [Recipient(r, original=o, notify=notify) for r, o in zip(qualified, all_recipients)],
                        arrival_time=round(now, 6), client_name="localhost", client_address="127.0.0.1",
                        protocol="local", envid=envid)
    directory = os.path.join(config["queue_directory"], "maildrop")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, queue_id + ".tmp")
    qfile.write_file(tmp, content, envelope)
    os.rename(tmp, os.path.join(directory, queue_id))
    fsync_directory(directory)
    return queue_id


def _login():
    try:
        return getpass.getuser()
    except Exception:
        return "uid%d" % os.getuid()


def run(args):
    config = maincf.load(args.config)
    if args.mode == "p":
        tools.list_queue(tools.open_queue(args.config), sys.stdout)
        return 0
    if args.flush:
        tools.request_flush(tools.open_queue(args.config))
        return 0
    if args.mode == "s":
        return smtp_on_stdio(args.config)
    if args.mode != "m":
        sys.stderr.write("sendmail: fatal: -b%s is not supported\n" % args.mode)
        return 64
    notify = ()
    if args.dsn_notify:
        notify = tuple(word.strip().upper() for word in args.dsn_notify.split(","))
    try:
        submit(config, sys.stdin.buffer, args.recipients, args.sender, args.full_name, args.extract,
               args.ignore_dots or "i" in args.options, notify, args.envid or "")
    except ValueError as err:
        sys.stderr.write("sendmail: fatal: %s\n" % err)
        return 64
    except OSError as err:
        sys.stderr.write("sendmail: fatal: cannot queue the message: %s\n" % err)
        return 75
    return 0


def smtp_on_stdio(config_directory):
    """``sendmail -bs``: run an SMTP session on standard input/output; return the exit status."""
    from twisted.internet import defer, protocol, stdio, task
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from zope.interface import implementer
    from twisted.internet.address import IPv4Address
    from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

    from mailstack.app import ServerContext
    from mailstack.smtpd.protocol import SMTPServerProtocol
    from mailstack.smtpd.service import build_server

    @implementer(IHalfCloseableProtocol)
    class LocalClient(ProtocolWrapper):
        """Presents the pipe as a local TCP client, as Postfix's sendmail -bs is a local submission.

        The end of standard input does not end the session: commands read
        before it are still answered; the session ends when the server
        closes it (QUIT) or after ``smtpd_timeout``.
        """

        def readConnectionLost(self):
            pass

        def writeConnectionLost(self):
            self.transport.loseConnection()

        def getPeer(self):
            return IPv4Address("TCP", "127.0.0.1", 0)

        def getHost(self):
            return IPv4Address("TCP", "127.0.0.1", 25)

        def connectionLost(self, reason):
            super().connectionLost(reason)
            if not done.called:
                done.callback(None)

    done = defer.Deferred()

    def main(reactor):
        config = maincf.load(config_directory)
        server = build_server(ServerContext(reactor, config, config_directory), config, "sendmail")

        wrapping = WrappingFactory(protocol.Factory())
        stdio.StandardIO(LocalClient(wrapping, SMTPServerProtocol(server)), reactor=reactor)
        return done

    task.react(main, [])
    return 0
