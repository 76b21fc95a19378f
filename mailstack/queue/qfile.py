# -*- test-case-name: tests.queue.test_qfile -*-
"""The queue file format: one message, its envelope and delivery state, as text records.

A queue file holds the message content first and the envelope after it,
because the SMTP server streams the content before it knows the envelope
is final (``commit`` comes after the end of DATA)::

    MAILSTACK-QUEUE 1 000000001234\\n      header: format version, content length
    <content: headers and body, LF line ends, exactly <length> bytes>
    T 1700000000.123456\\n                 arrival time
    S sender@example.org\\n                envelope sender ("" = null sender)
    A client_name=mx.example.org\\n        attributes (client, helo, protocol, DSN...)
    W 0000000000\\n                        delay warning sent at (fixed width, rewritten in place)
    R rcpt@example.com<TAB>orig<TAB>orcpt<TAB>notify\\n   one per recipient
    E\\n                                   end of file: the file is complete

Records are ``TYPE SP value LF``; values are UTF-8 with ``%``, TAB, CR and
LF escaped as ``%25``, ``%09``, ``%0D``, ``%0A``.  Never pickle: the format
is read by the admin tools, by other processes and by other versions.

**Done recipients are marked in place** (Postfix ``rec_type.h``
``REC_TYPE_DONE``): when a recipient is delivered or bounced, the queue
manager overwrites the ``R`` of its record with ``D``.  The one-byte write
is atomic, so a crash leaves each recipient either pending or done; a
recipient whose delivery was under way at a crash is delivered again,
never lost.  A file without its ``E`` record, or with a bad header, is
incomplete or damaged: the queue manager moves it to ``corrupt/``.

Unknown record types are skipped when read, so that later versions may add
records.
"""

import os
import re

MAGIC = b"MAILSTACK-QUEUE 1 "
HEADER_LEN = len(MAGIC) + 12 + 1

_ESCAPES = (("%", "%25"), ("\t", "%09"), ("\r", "%0D"), ("\n", "%0A"))


class CorruptQueueFile(Exception):
    """The file is not a complete mailstack queue file."""


_SPECIAL = re.compile("[%\t\r\n]")


def escape(value):
    """Escape a record value (``%``, TAB, CR, LF)."""
    if not _SPECIAL.search(value):
        return value
    for char, code in _ESCAPES:
        value = value.replace(char, code)
    return value


def unescape(value):
    """Undo :func:`escape`."""
    for char, code in reversed(_ESCAPES):
        value = value.replace(code, char)
    return value


def header(content_length):
    """Return the header line for ``content_length`` bytes of content."""
    return MAGIC + b"%012d\n" % content_length


def envelope_records(envelope, warning_time=0):
    """Return the envelope records (bytes) for ``envelope``."""
    from mailstack.queue.envelope import ATTRIBUTES
    lines = ["T %.6f" % envelope.arrival_time, "S " + escape(envelope.sender)]
    for name in ATTRIBUTES:
        value = getattr(envelope, name)
        if isinstance(value, bool):
            value = "yes" if value else ""
        if value:
            lines.append("A %s=%s" % (name, escape(str(value))))
    lines.append("W %010d" % int(warning_time))
    for rcpt in envelope.recipients:
        lines.append("R " + "\t".join((escape(rcpt.address), escape(rcpt.original),
                                        escape(rcpt.orcpt), ",".join(rcpt.notify))))
    lines.append("E")
    return ("\n".join(lines) + "\n").encode("utf-8")


class QueuedRecipient:
    """A recipient as read from a queue file.

    Attributes:
        index: position among the file's recipients (stable id within the message).
        recipient: the :class:`~mailstack.queue.envelope.Recipient`.
        done: True when the recipient was delivered or bounced already.
        offset: the file offset of the record's type byte, for marking it done.
    """

    __slots__ = ("index", "recipient", "done", "offset")

    def __init__(self, index, recipient, done, offset):
        self.index, self.recipient, self.done, self.offset = index, recipient, done, offset


class QueueFile:
    """A parsed queue file.

    Attributes:
        path: where it was read.
        envelope: the :class:`~mailstack.queue.envelope.Envelope`.
        recipients: list of :class:`QueuedRecipient`, done ones included.
        content_length: bytes of content (headers and body).
        warning_time: when a delay warning was sent (0: not yet).
        warning_offset: file offset of the W record value.
        content: the content when :func:`read` was asked to keep it, else None.
    """

    def __init__(self, path, envelope, recipients, content_length, warning_time, warning_offset, content=None):
        self.content = content
        self.path = path
        self.envelope = envelope
        self.recipients = recipients
        self.content_length = content_length
        self.warning_time = warning_time
        self.warning_offset = warning_offset

    @property
    def queue_id(self):
        return os.path.basename(self.path)

    def pending(self):
        """Return the recipients not yet done."""
        return [r for r in self.recipients if not r.done]

    def read_content(self):
        """Return the message content (bytes, LF line ends)."""
        if self.content is not None:
            return self.content
        with open(self.path, "rb") as handle:
            handle.seek(HEADER_LEN)
            return handle.read(self.content_length)


def read(path, keep_content=0):
    """Parse the queue file at ``path``.

    Args:
        path: the queue file.
        keep_content: keep the content (``QueueFile.content``) when it is at
            most this many bytes: the whole file is read at once, saving the
            queue manager a second open and read (and a thread hop) per message.

    Returns:
        QueueFile.

    Raises:
        CorruptQueueFile: for an incomplete or damaged file.
        OSError: when the file cannot be read (e.g. it was moved meanwhile).
    """
    from mailstack.queue.envelope import Envelope, Recipient
    with open(path, "rb") as handle:
        head = handle.read(HEADER_LEN)
        if len(head) != HEADER_LEN or not head.startswith(MAGIC) or not head.endswith(b"\n"):
            raise CorruptQueueFile("%s: bad queue file header" % path)
        try:
            length = int(head[len(MAGIC):-1])
        except ValueError:
            raise CorruptQueueFile("%s: bad content length" % path) from None
        base = HEADER_LEN + length
        content = None
        if length <= keep_content:
            rest = handle.read()
            if len(rest) < length:
                raise CorruptQueueFile("%s: truncated content" % path)
            content, tail = rest[:length], rest[length:]
        else:
            handle.seek(base)
            tail = handle.read()
    envelope = Envelope(sender="")
    recipients, warning_time, warning_offset, complete = [], 0, 0, False
    offset = base
    for raw in tail.split(b"\n"):
        line = raw.decode("utf-8", "surrogateescape")
        kind, value = line[:1], line[2:]
        if kind == "T":
            envelope.arrival_time = float(value)
        elif kind == "S":
            envelope.sender = unescape(value)
        elif kind == "A":
            name, _, text = value.partition("=")
            text = unescape(text)
            if name == "smtputf8":
                envelope.smtputf8 = text == "yes"
            elif hasattr(envelope, name):
                setattr(envelope, name, text)
        elif kind == "W":
            warning_time, warning_offset = int(value), offset + 2
        elif kind in ("R", "D"):
            fields = (value.split("\t") + ["", "", ""])[:4]
            address, original, orcpt, notify = (unescape(f) for f in fields)
            rcpt = Recipient(address, original, orcpt, tuple(n for n in notify.split(",") if n))
            envelope.recipients.append(rcpt)
            recipients.append(QueuedRecipient(len(recipients), rcpt, kind == "D", offset))
        elif kind == "E":
            complete = True
            break
        offset += len(raw) + 1
    if not complete:
        raise CorruptQueueFile("%s: no end record (incomplete file)" % path)
    return QueueFile(path, envelope, recipients, length, warning_time, warning_offset, content)


def mark_done(path, offsets):
    """Mark recipients done in place: overwrite the ``R`` at each offset with ``D``.

    A one-byte ``pwrite`` per recipient goes to the page cache, so this is
    cheap enough for the reactor thread; the file is fsynced before it
    changes directory, and a lost mark only repeats a delivery.
    """
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return  # deleted meanwhile (postsuper -d)
    try:
        for offset in offsets:
            os.pwrite(fd, b"D", offset)
    finally:
        os.close(fd)


def set_warning_time(path, qf, when):
    """Record in place that a delay warning was sent at ``when``."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"%010d" % int(when), qf.warning_offset)
    finally:
        os.close(fd)
    qf.warning_time = int(when)


def write_file(path, content, envelope):
    """Write a complete queue file synchronously (admin tools, tests) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, header(len(content)) + content + envelope_records(envelope))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd, data):
    """Write all of ``data`` to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
