"""The mail queue: durable queue files, the queue manager (qmgr) and pickup.

The API other parts call (see ``docs/queue.md``)::

    from mailstack.queue import Envelope, Recipient, MailQueue, QueueError, mail_queue
    writer = mail_queue(ctx).new_message()
    writer.write(b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
    queue_id = await writer.commit(Envelope("a@example.org", [Recipient("b@example.com")]))
"""

from mailstack.queue.envelope import Envelope, Recipient
from mailstack.queue.store import MailQueue, QueueError, QueueFileWriter, mail_queue

__all__ = ["Envelope", "Recipient", "MailQueue", "QueueError", "QueueFileWriter", "mail_queue"]
