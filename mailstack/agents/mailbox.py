# -*- test-case-name: tests.agents.test_local -*-
"""Final delivery into a maildir, through the shared store (``mailstack/store/``).

Local and virtual delivery never write maildir files themselves: they call
:class:`StoreMailboxes`, which opens the user's
:class:`~mailstack.store.mailbox.Mailbox` and runs its ``deliver`` in the
reactor's thread pool (write to ``tmp/``, fsync, rename into ``new/``,
fsync the directory), so IMAP IDLE sessions hear of the new message at
once.  Store errors become delivery errors: a full mailbox is ``4.2.2`` or
``5.2.2`` per ``quota_full_tempfail``, other store errors keep their code,
file system errors defer with ``4.3.0``.
"""

from mailstack.agents.base import DeliveryError
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
            await mailbox.deliver_async(data)
        except StoreError as err:
            raise DeliveryError(err.dsn, "cannot update mailbox %s for user %s. %s"
                                % (mailbox_root(location), user, err.text)) from None
        except OSError as err:
            raise DeliveryError("4.3.0", "cannot update mailbox %s for user %s. %s"
                                % (mailbox_root(location), user, err.strerror)) from None


def mailbox_root(location):
    return location.partition(":")[2] if location.startswith("maildir:") else location
