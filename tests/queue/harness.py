"""Shared test harness: a queue manager on a temporary queue with an injected clock."""

import time

from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher

from mailstack.bounce.notices import Bouncer
from mailstack.common.maillog import format_line
from mailstack.config import maincf
from mailstack.queue import Envelope, MailQueue, Recipient
from mailstack.queue.qmgr import QueueManager
from mailstack.rewrite.resolve import Resolver

BASE_SETTINGS = """\
myhostname = mail.example.test
mydomain = example.test
mydestination = $myhostname, localhost
queue_directory = {tmp}/queue
data_directory = {tmp}/data
alias_maps =
qmgr_scan_spacing = 0
"""


def make_config(tmp_path, extra=""):
    """Return a validated Config for tests (main.cf text on top of BASE_SETTINGS)."""
    text = BASE_SETTINGS.format(tmp=tmp_path) + extra
    env = maincf.Environment(hostname="mail.example.test", config_directory=str(tmp_path))
    return maincf.Config(maincf.parse_lines(text), env).validate()


class LogCapture:
    """Collect maillog lines emitted through twisted.logger."""

    def __init__(self):
        self.lines = []

    def __call__(self, event):
        if str(event.get("log_namespace", "")).startswith("mailstack"):
            self.lines.append(format_line(event, "mail", "mailstack", pid=1))

    def start(self):
        globalLogPublisher.addObserver(self)
        return self

    def stop(self):
        globalLogPublisher.removeObserver(self)

    def matching(self, text):
        return [line for line in self.lines if text in line]


async def wait_until(predicate, clock=None, timeout=5.0):
    """Advance ``clock`` by 0 and spin the real reactor until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        if clock is not None:
            clock.advance(0)
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within %ss" % timeout)
        await task.deferLater(reactor, 0.005, lambda: None)


class Harness:
    """A queue manager on ``tmp_path/queue`` with a ``task.Clock`` set to the real time."""

    def __init__(self, tmp_path, extra="", agents=None):
        self.config = make_config(tmp_path, extra)
        self.clock = task.Clock()
        self.clock.advance(time.time())
        self.queue = MailQueue(self.config["queue_directory"], reactor, hostname="mail.example.test")
        self.resolver = Resolver(self.config)
        self.bouncer = Bouncer(self.queue, self.config, self.clock)
        self.agents = agents if agents is not None else {}
        self.qmgr = QueueManager(self.queue, self.config, self.agents, self.resolver, self.bouncer, self.clock)

    async def submit(self, sender, recipients, body=b"Subject: test\n\nhello\n", **envelope):
        writer = self.queue.new_message()
        writer.write(body)
        rcpts = [r if isinstance(r, Recipient) else Recipient(r) for r in recipients]
        return await writer.commit(Envelope(sender, rcpts, **envelope))

    def idle(self):
        return not self.qmgr.active and not self.qmgr._filling and not self.queue.list("incoming")

    async def settle(self):
        """Let the queue manager work until nothing is active or incoming."""
        await wait_until(self.idle, self.clock)

    def advance(self, seconds):
        self.clock.advance(seconds)
