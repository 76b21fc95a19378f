# -*- test-case-name: tests.queue.test_admin -*-
"""The queue tools: ``postqueue``/``mailq``, ``postsuper``, ``postcat`` (Postfix names and output).

These run outside the server, on the queue directory of ``--config``'s
main.cf, and talk to a running queue manager only through files: a flush
request is a trigger file ``public/flush-ALL`` or ``public/flush-ID``
that the queue manager picks up within ``qmgr_scan_interval``.

``postqueue -p`` / ``mailq``
    Lists the queue as Postfix's showq does: queue id (``*`` active,
    ``!`` on hold), size, arrival time, sender (``MAILER-DAEMON`` for the
    null sender), then each pending recipient, preceded by its deferral
    reason in parentheses; then ``-- N Kbytes in M Requests.``, or
    ``Mail queue is empty``.
``postqueue -f`` / ``-i ID`` / ``-s SITE``
    Flush all deferred mail, one message, or the messages with recipients
    at SITE: their retry time becomes now and a trigger tells the queue
    manager (``defer_transports`` deliver on a flush).
``postsuper -d ID|ALL [queue]``, ``-h``, ``-H``, ``-r``, ``-s``
    Delete, hold, release from hold, requeue (back to incoming/), and the
    structure check (stale temporary files removed, misplaced files moved
    back).  ``-`` as ID reads ids from standard input.  Reports as
    Postfix: ``postsuper: Deleted: 2 messages``.
``postcat -q ID``
    Prints a queue file's envelope records and content, as Postfix's
    postcat does.
"""

import os
import sys
import time

from mailstack.common.queue_id import is_queue_id
from mailstack.config import maincf
from mailstack.config.maincf import ConfigError
from mailstack.queue import qfile
from mailstack.queue.qmgr import TRIGGER_DIR, read_defer_log
from mailstack.queue.store import MailQueue
from mailstack.rewrite.resolve import split_address
from mailstack.util.atomic import fsync_directory

LISTED = (("active", "*"), ("incoming", ""), ("deferred", ""), ("hold", "!"), ("maildrop", ""))
POSTSUPER_QUEUES = ("hold", "incoming", "active", "deferred", "maildrop")


def open_queue(config_directory):
    """Return the :class:`MailQueue` of the configuration in ``config_directory`` (no reactor)."""
    config = maincf.load(config_directory)
    return MailQueue(config["queue_directory"], reactor=None, hostname=config["myhostname"])


def _entries(queue):
    for queue_name, mark in LISTED:
        for queue_id in queue.list(queue_name):
            path = queue.path(queue_name, queue_id)
            try:
                qf = qfile.read(path)
            except (qfile.CorruptQueueFile, OSError):
                continue
            yield queue_name, mark, queue_id, qf


def list_queue(queue, out):
    """Write the ``mailq`` listing of ``queue`` to ``out``; return the number of messages."""
    count = size = 0
    for queue_name, mark, queue_id, qf in _entries(queue):
        if count == 0:
            out.write("-Queue ID-          --Size-- ----Arrival Time---- -Sender/Recipient-------\n")
        count += 1
        size += qf.content_length
        arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(qf.envelope.arrival_time))
        out.write("%-19s %8d %s  %s\n" % (queue_id + mark, qf.content_length, arrival,
                                          qf.envelope.sender or "MAILER-DAEMON"))
        reasons = read_defer_log(queue, queue_id)
        last_reason = None
        for rcpt in qf.pending():
            reason = reasons.get(rcpt.recipient.address)
            if reason and reason[1] != last_reason:
                out.write("(%s)\n" % reason[1])
                last_reason = reason[1]
            out.write("%49s%s\n" % ("", rcpt.recipient.address))
        out.write("\n")
    if count == 0:
        out.write("Mail queue is empty\n")
    else:
        out.write("-- %d Kbytes in %d Request%s.\n" % ((size + 1023) // 1024, count, "" if count == 1 else "s"))
    return count


def request_flush(queue, queue_ids=None):
    """Make deferred mail due now and leave a trigger for the queue manager.

    Args:
        queue_ids: the messages to flush, or None for all.

    Returns:
        the number of deferred messages made due.
    """
    now = time.time()
    targets = queue.list("deferred") if queue_ids is None else [q for q in queue_ids
                                                                if os.path.exists(queue.path("deferred", q))]
    for queue_id in targets:
        try:
            os.utime(queue.path("deferred", queue_id), (now, now))
        except FileNotFoundError:
            pass
    os.makedirs(queue.path(TRIGGER_DIR), mode=0o700, exist_ok=True)
    for name in (["ALL"] if queue_ids is None else list(queue_ids)):
        with open(queue.path(TRIGGER_DIR, "flush-" + name), "w"):
            pass
    return len(targets)


def site_messages(queue, site):
    """Return the deferred queue ids with a pending recipient at ``site`` (a domain)."""
    site = site.lower().strip("[]")
    found = []
    for queue_id in queue.list("deferred"):
        try:
            qf = qfile.read(queue.path("deferred", queue_id))
        except (qfile.CorruptQueueFile, OSError):
            continue
        if any(split_address(r.recipient.address)[1] == site for r in qf.pending()):
            found.append(queue_id)
    return found


def _plural(count):
    return "%d message%s" % (count, "" if count == 1 else "s")


def _ids(queue, args_ids, queues, stdin):
    """Expand ID arguments: ``ALL`` (every message in ``queues``), ``-`` (ids on stdin), or ids."""
    result = []
    for word in args_ids:
        if word == "ALL":
            for name in queues:
                result.extend((q, name) for q in queue.list(name))
        elif word == "-":
            result.extend(_ids(queue, stdin.read().split(), queues, stdin))
        elif is_queue_id(word):
            where = queue.locate(word, queues)
            if where is not None:
                result.append((word, where))
        else:
            raise ConfigError("invalid queue id: %s" % word)
    return result


def postsuper(queue, action, words, queues=POSTSUPER_QUEUES, err=None, stdin=None):
    """Run one postsuper action (``d``, ``h``, ``H``, ``r``) on ``words``; return the count affected."""
    err = err or sys.stderr
    stdin = stdin or sys.stdin
    if action == "H":
        queues = ("hold",)
    elif action == "h":
        queues = tuple(q for q in queues if q != "hold")
    targets = _ids(queue, words, queues, stdin)
    count = 0
    released = []
    now = time.time()
    for queue_id, where in targets:
        if action == "d":
            done = queue.remove(queue_id, where)
            message = "removed"
        elif action == "h":
            done = queue.move(queue_id, where, "hold")
            message = "placed on hold"
        elif action == "H":
            done = queue.move(queue_id, "hold", "deferred", mtime=now)
            message = "released from hold"
            if done:
                released.append(queue_id)
        else:
            done = queue.move(queue_id, where, "incoming")
            message = "requeued"
        if done:
            count += 1
            err.write("postsuper: %s: %s\n" % (queue_id, message))
    for name in ("incoming", "deferred", "hold"):
        fsync_directory(queue.path(name))
    if action == "H" and released:
        request_flush(queue, released)  # a running queue manager picks them up at once
    summary = {"d": "Deleted", "h": "Placed on hold", "H": "Released from hold", "r": "Requeued"}[action]
    if count:
        err.write("postsuper: %s: %s\n" % (summary, _plural(count)))
    return count


def structure_check(queue, err=None, max_age=3600):
    """``postsuper -s``: remove stale temporary files and files that are not queue files; return fixes."""
    err = err or sys.stderr
    fixes = 0
    now = time.time()
    for name in POSTSUPER_QUEUES:
        directory = queue.path(name)
        for entry in os.listdir(directory):
            path = os.path.join(directory, entry)
            if entry.endswith(".tmp"):
                if now - os.stat(path).st_mtime > max_age:
                    os.unlink(path)
                    err.write("postsuper: removed stale temporary file %s/%s\n" % (name, entry))
                    fixes += 1
            elif not is_queue_id(entry):
                queue.move(entry, name, "corrupt")
                err.write("postsuper: %s/%s: not a queue file, moved to corrupt\n" % (name, entry))
                fixes += 1
    return fixes


def postcat(queue, queue_id, out):
    """Print the queue file ``queue_id`` as Postfix's ``postcat -q`` does; return False when not found."""
    where = queue.locate(queue_id, POSTSUPER_QUEUES + ("corrupt",))
    if where is None:
        return False
    label = "%s/%s" % (where, queue_id)
    qf = qfile.read(queue.path(where, queue_id))
    env = qf.envelope
    out.write("*** ENVELOPE RECORDS %s ***\n" % label)
    out.write("message_size: %16d\n" % qf.content_length)
    out.write("message_arrival_time: %s\n" % time.strftime("%a %b %d %H:%M:%S %Y",
                                                             time.localtime(env.arrival_time)))
    out.write("sender: %s\n" % env.sender)
    for name in ("client_name", "client_address", "helo", "protocol", "sasl_username", "envid", "ret",
                 "body_type"):
        value = getattr(env, name)
        if value:
            out.write("named_attribute: %s=%s\n" % (name, value))
    if env.smtputf8:
        out.write("named_attribute: smtputf8=yes\n")
    if qf.warning_time:
        out.write("warning_message_time: %s\n" % time.ctime(qf.warning_time))
    for rcpt in qf.recipients:
        r = rcpt.recipient
        if r.original:
            out.write("original_recipient: %s\n" % r.original)
        if r.orcpt:
            out.write("dsn_orig_rcpt: %s\n" % r.orcpt)
        if r.notify:
            out.write("dsn_notify: %s\n" % ",".join(r.notify))
        out.write("%s: %s\n" % ("done_recipient" if rcpt.done else "recipient", r.address))
    out.write("*** MESSAGE CONTENTS %s ***\n" % label)
    out.flush()
    content = qf.read_content()
    stream = getattr(out, "buffer", None)
    if stream is not None:
        stream.write(content)
        stream.flush()
    else:
        out.write(content.decode("utf-8", "replace"))
    if not content.endswith(b"\n"):
        out.write("\n")
    out.write("*** MESSAGE FILE END %s ***\n" % label)
    return True
