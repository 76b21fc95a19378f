# -*- test-case-name: tests.agents.test_local -*-
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

Store errors become delivery errors: a full mailbox is ``4.2.2`` or
``5.2.2`` per ``quota_full_tempfail``, other store errors keep their code,
file system errors defer with ``4.3.0``.
"""

import os

from mailstack.agents.base import DeliveryError
from mailstack.store import maildir
from mailstack.store.errors import StoreError


class StoreMailboxes:
    """Deliver to maildirs through a :class:`~mailstack.store.store.MailStore`."""

    def __init__(self, store):
        self.store = store

    async def deliver(self, path, user, data, quota_bytes=0, home=""):
        """Deliver ``data`` into the maildir at ``path`` (a directory or a ``maildir:`` location).

        Raises:
            DeliveryError: for quota and store errors (4.x.x or 5.x.x).
        """
        location = path if path.startswith("maildir:") else "maildir:" + path.replace("%", "%%")
        rule = "*:storage=%dB" % quota_bytes if quota_bytes else None
        try:
            mailbox = self.store.mailbox(user=user, home=home, location=location, quota_rule=rule)
            await self.store.run(self._deliver, mailbox, data)
        except StoreError as err:
            raise DeliveryError(err.dsn, "cannot update mailbox %s for user %s. %s"
                                % (mailbox_root(location), user, err.text)) from None
        except OSError as err:
            raise DeliveryError("4.3.0", "cannot update mailbox %s for user %s. %s"
                                % (mailbox_root(location), user, err.strerror), problem="resource") from None

    def _deliver(self, mailbox, data):
        mailbox.ensure()
        quota = mailbox.quota

        def before_commit(tmp_path):
            quota.reserve(os.stat(tmp_path).st_size, 1)
        return maildir.deliver(mailbox.root, data, hostname=self.store.hostname, fsync=self.store.fsync,
                               before_commit=before_commit)


def mailbox_root(location):
    return location.partition(":")[2] if location.startswith("maildir:") else location
