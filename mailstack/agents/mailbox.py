# -*- test-case-name: tests.agents.test_mailbox -*-
"""Final delivery into a maildir, through the shared store (``mailstack/store/``).

Local and virtual delivery never write maildir files themselves: they call
:class:`StoreMailboxes`, which opens the user's
:class:`~mailstack.store.mailbox.Mailbox` (creating the maildir and its
default folders on first use), checks and counts the message against the
Maildir++ quota (:meth:`Quota.reserve`) and writes it with the store's
crash-safe :func:`mailstack.store.maildir.deliver` (``tmp/``, fsync,
rename into ``new/``, fsync the directory), in the reactor's thread pool.

Design note: unlike IMAP APPEND, delivery does **not** take the
``dovecot-uidlist`` dot-lock to number the message at once; it only puts
the file into ``new/``, as Postfix's local(8)/virtual(8) and maildir
writers in general do, and the next sync (IMAP, POP3, the folder watch
that tells IDLE sessions) gives it its UID.  A delivery agent that is
killed while holding the uidlist lock would otherwise stall every delivery
to that mailbox until the lock turns stale (two minutes, Dovecot's rule);
the crash test kills the server mid-delivery on purpose.

Batches: each hand-off to a worker thread costs a queue put, a thread
wake-up and a reactor wake-up, more than writing a small message.  So at
most :attr:`StoreMailboxes.jobs` thread jobs deliver at once, and the
deliveries asked for while they run wait and go together in the next job
(at most :attr:`StoreMailboxes.batch_size` messages and, beyond the first,
:attr:`StoreMailboxes.batch_bytes` bytes, so that a big message does not
hold many small ones back): one delivery alone still starts at once, and a
busy queue manager pays one hand-off per batch.  In
a job each message is written and fsynced in ``tmp/`` and renamed into
``new/`` in turn, then each directory that received messages is fsynced
once (:func:`~mailstack.store.maildir.sync_dir`); only then do the
deliveries of that batch report success, so a delivery is durable when
:meth:`StoreMailboxes.deliver` returns, as before.  The file fsyncs of one
batch run one after the other; several jobs keep several in flight (on a
journalled file system concurrent fsyncs share a journal commit).  A failure of one
message (quota, disk) fails that message only.

Maildirs known to exist are remembered, so that a delivery does not stat
them again; a maildir removed behind the agent's back is recreated when
the write finds it missing.

Store errors become delivery errors: a full mailbox is ``4.2.2`` or
``5.2.2`` per ``quota_full_tempfail``, other store errors keep their code,
file system errors defer with ``4.3.0``.
"""

import collections
import os

from twisted.internet import defer
from twisted.python import failure

from mailstack.agents.base import DeliveryError
from mailstack.store import maildir
from mailstack.store.errors import StoreError

# Bounds of the per-process caches (mailbox objects, maildirs known to exist).
_CACHE_LIMIT = 4096


class StoreMailboxes:
    """Deliver to maildirs through a :class:`~mailstack.store.store.MailStore`.

    Args:
        store: the process's :class:`~mailstack.store.store.MailStore`.
        jobs: how many thread jobs may deliver at once.
        batch_size: the most deliveries one thread job makes.
    """

    jobs = 4
    batch_size = 32
    batch_bytes = 1 << 20

    def __init__(self, store, jobs=None, batch_size=None):
        self.store = store
        if jobs is not None:
            self.jobs = jobs
        if batch_size is not None:
            self.batch_size = batch_size
        self._mailboxes = {}
        self._ready = set()             # maildir roots that exist (read and written in threads too)
        self._waiting = collections.deque()
        self._running = 0

    async def deliver(self, path, user, data, quota_bytes=0, home=""):
        """Deliver ``data`` into the maildir at ``path`` (a directory or a ``maildir:`` location).

        Returns once the message file and its directory entry are on disk.

        Raises:
            DeliveryError: for quota and store errors (4.x.x or 5.x.x).
        """
        location = path if path.startswith("maildir:") else "maildir:" + path.replace("%", "%%")
        rule = "*:storage=%dB" % quota_bytes if quota_bytes else None
        try:
            mailbox = self._mailbox(user, home, location, rule)
            waiter = defer.Deferred()
            self._waiting.append((mailbox, data, waiter))
            self._start()
            await waiter
        except StoreError as err:
            raise DeliveryError(err.dsn, "cannot update mailbox %s for user %s. %s"
                                % (mailbox_root(location), user, err.text)) from None
        except OSError as err:
            raise DeliveryError("4.3.0", "cannot update mailbox %s for user %s. %s"
                                % (mailbox_root(location), user, err.strerror), problem="resource") from None

    def _mailbox(self, user, home, location, rule):
        key = (user, home, location, rule)
        mailbox = self._mailboxes.get(key)
        if mailbox is None:
            if len(self._mailboxes) >= _CACHE_LIMIT:
                self._mailboxes.clear()
            mailbox = self._mailboxes[key] = self.store.mailbox(user=user, home=home, location=location,
                                                                quota_rule=rule)
        return mailbox

    def _start(self):
        waiting = self._waiting
        while waiting and self._running < self.jobs:
            batch = [waiting.popleft()]
            size = len(batch[0][1])
            while waiting and len(batch) < self.batch_size and size + len(waiting[0][1]) <= self.batch_bytes:
                size += len(waiting[0][1])
                batch.append(waiting.popleft())
            self._running += 1
            self.store.run(self._deliver_batch, [(m, d) for m, d, _ in batch]).addBoth(self._finished, batch)

    def _finished(self, results, batch):
        self._running -= 1
        if isinstance(results, failure.Failure):   # the whole job broke
            results = [results] * len(batch)
        for (_, _, waiter), result in zip(batch, results):
            if isinstance(result, (BaseException, failure.Failure)):
                waiter.errback(result)
            else:
                waiter.callback(result)
        self._start()

    def _deliver_batch(self, batch):
        """Deliver ``[(mailbox, data)]``; return a result per message (Delivered or the exception).  Blocks."""
        results = []
        directories = {}
        for mailbox, data in batch:
            try:
                delivered = self._write(mailbox, data)
            except Exception as err:
                results.append(err)
                continue
            directories.setdefault(os.path.dirname(delivered.path), []).append(len(results))
            results.append(delivered)
        if self.store.fsync:
            for directory, indexes in directories.items():
                try:
                    maildir.sync_dir(directory)
                except OSError as err:
                    for index in indexes:
                        results[index] = err
        return results

    def _write(self, mailbox, data):
        """Write one message into ``new/`` (its directory not yet fsynced); return Delivered.  Blocks."""
        root = mailbox.root
        if root not in self._ready:
            mailbox.ensure()
            self._remember(root)
        quota = mailbox.quota

        def before_commit(tmp_path):
            quota.reserve(os.stat(tmp_path).st_size, 1)
        try:
            return maildir.deliver(root, data, hostname=self.store.hostname, fsync=self.store.fsync,
                                   before_commit=before_commit, sync_directory=False)
        except FileNotFoundError:
            # Removed since it was remembered (a user deleted and recreated): make it again, once.
            self._ready.discard(root)
            mailbox.ensure()
            self._remember(root)
            return maildir.deliver(root, data, hostname=self.store.hostname, fsync=self.store.fsync,
                                   before_commit=before_commit, sync_directory=False)

    def _remember(self, root):
        if len(self._ready) >= _CACHE_LIMIT:
            self._ready.clear()
        self._ready.add(root)


def mailbox_root(location):
    return location.partition(":")[2] if location.startswith("maildir:") else location
