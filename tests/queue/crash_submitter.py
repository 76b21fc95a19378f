"""Submit a stream of messages to a queue directory; print each token once its commit returned.

Usage: python -m tests.queue.crash_submitter CONFIG_DIR COUNT

Even-numbered messages go through the queue API (QueueFileWriter.commit into
incoming/, as the SMTP server does), odd ones through sendmail's maildrop.
A token printed on stdout is an acknowledged message: it must be delivered.
"""

import io
import sys

from twisted.internet import task

from mailstack.admin.sendmail import submit
from mailstack.config import maincf
from mailstack.queue import Envelope, MailQueue, Recipient


async def main(reactor, config_dir, count):
    config = maincf.load(config_dir)
    queue = MailQueue(config["queue_directory"], reactor, hostname=config["myhostname"])
    for i in range(count):
        token = "crash-%04d" % i
        body = b"Subject: %s\n\n%s\n" % (token.encode(), b"x" * 2000)
        if i % 2 == 0:
            writer = queue.new_message()
            writer.write(body)
            await writer.commit(Envelope("root@example.test", [Recipient("alice@example.test")]))
        else:
            submit(config, io.BytesIO(body), ["alice@example.test"], sender="root@example.test", ignore_dots=True)
        sys.stdout.write(token + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    task.react(lambda reactor: __import__("twisted.internet.defer", fromlist=["x"]).ensureDeferred(
        main(reactor, sys.argv[1], int(sys.argv[2]))))
