"""Child process for tests/store/test_concurrency.py: deliver, raw-deliver, flag or read one folder.

Usage: python -m tests.store.concurrency_worker ROLE MAILDIR COUNT OUT
ROLE is deliver (through the store: UID at once), raw (maildir.deliver only,
like an outside MTA: UIDs come from readers' syncs), flag (toggle \\Seen on
random messages) or read (sync in a loop and record every uid -> base seen
and every expunge).  OUT receives a JSON summary.
"""

import json
import os
import random
import sys
import time

from mailstack.store import maildir
from mailstack.store.store import MailStore


def main(role, root, count, out):
    store = MailStore(hostname="host%d" % os.getpid(), fsync=False)
    mb = store.mailbox("alice", location="maildir:" + root)
    inbox = mb.folder()
    seen, expunged, clashes = {}, [], []
    deadline = time.monotonic() + 30
    if role == "deliver":
        for i in range(count):
            mb.deliver(b"Subject: %d/%d\n\nx\n" % (os.getpid(), i))
    elif role == "raw":
        for i in range(count):
            maildir.deliver(root, b"Subject: raw %d/%d\n\nx\n" % (os.getpid(), i), fsync=False)
    elif role in ("flag", "read"):
        stop = os.path.join(os.path.dirname(root), "stop")
        while not os.path.exists(stop) and time.monotonic() < deadline:
            changes = inbox.sync()
            expunged.extend(changes.expunged)
            for message in inbox.messages():
                if seen.setdefault(message.uid, message.base) != message.base:
                    clashes.append(message.uid)
            if role == "flag" and inbox.messages():
                targets = random.sample(inbox.messages(), min(5, len(inbox.messages())))
                for message in targets:
                    mode = "remove" if "\\Seen" in message.flags else "add"
                    inbox.store_flags([message.uid], {"\\Seen"}, mode)
    with open(out, "w") as handle:
        json.dump({"seen": seen, "expunged": expunged, "clashes": clashes}, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
