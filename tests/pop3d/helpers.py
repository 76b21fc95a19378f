"""A real pop3/pop3s server on loopback for tests, with users, mail and captured log lines."""

import os
import poplib
import ssl
import time

from twisted.internet import reactor, threads
from twisted.logger import globalLogPublisher

from mailstack import app
from mailstack.common import maillog
from mailstack.config import maincf
from mailstack.store.store import MailStore

DOMAIN = "example.test"
USERS = {
    "joe@example.test": "{PLAIN}secret",
    "ann@example.test": "{PLAIN}s3cret pass",
    # "hunter2", hashed: APOP cannot work for this user.
    "bob@example.test": "{SHA512-CRYPT}$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWN"
                        "W0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.",
}
PASSWORDS = {"joe@example.test": "secret", "ann@example.test": "s3cret pass", "bob@example.test": "hunter2"}

MASTER_CF = """\
pop3   tcp:0:interface=127.0.0.1
pop3s  ssl:0:interface=127.0.0.1
"""


def write_users(config_dir, users=None, extra_main_cf=""):
    """Write the passwd file and main.cf additions for the test users."""
    lines = ["%s:%s::::::" % (user, password) for user, password in (users or USERS).items()]
    (config_dir / "passwd").write_text("\n".join(lines) + "\n")
    if extra_main_cf:
        with open(config_dir / "main.cf", "a") as handle:
            handle.write(extra_main_cf)


class Server:
    """A started root service with pop3 and pop3s; see :func:`start`."""

    def __init__(self, config_dir, root):
        self.config_dir = config_dir
        self.root = root
        self.config = maincf.load(str(config_dir))
        self.ports = {}
        self.lines = []
        self._store = MailStore(None, self.config, fsync=False)

    def observe(self, event):
        tag = maillog.service_tag(event)
        if tag in ("pop3", "pop3s"):
            self.lines.append(maillog.format_line(event, "host").split(": ", 1)[1])

    def log_text(self):
        return "\n".join(self.lines)

    def wait_for_log(self, text, count=1, timeout=10):
        """From a client thread: wait until ``text`` appears ``count`` times in the log."""
        deadline = time.monotonic() + timeout
        while self.log_text().count(text) < count:
            if time.monotonic() > deadline:
                raise AssertionError("log never showed %r:\n%s" % (text, self.log_text()))
            time.sleep(0.01)

    def mailbox(self, user):
        """The store Mailbox of ``user`` (as another process would open it)."""
        return self._store.mailbox(user)

    def deliver(self, user, *messages):
        """Deliver ``messages`` (bytes, LF line ends) to INBOX of ``user``; return their UIDs."""
        box = self.mailbox(user).ensure()
        return [box.deliver(message).uid for message in messages]

    def client(self, service="pop3", timeout=10):
        """Return a connected poplib client (POP3_SSL trusting init's CA for pop3s)."""
        port = self.ports[service]
        if service == "pop3s":
            context = ssl.create_default_context(cafile=str(self.config_dir / "tls" / "ca.pem"))
            return poplib.POP3_SSL("127.0.0.1", port, timeout=timeout, context=context)
        return poplib.POP3("127.0.0.1", port, timeout=timeout)

    def tls_context(self):
        return ssl.create_default_context(cafile=str(self.config_dir / "tls" / "ca.pem"))

    def in_thread(self, function, *args):
        """Run a blocking client conversation in a thread; return a Deferred."""
        return threads.deferToThread(function, *args)


async def start(config_dir, master_cf=MASTER_CF, users=None, extra_main_cf=""):
    """Start pop3 and pop3s from ``config_dir`` on loopback port 0; return a :class:`Server`."""
    write_users(config_dir, users, extra_main_cf)
    (config_dir / "master.cf").write_text(master_cf)
    root = app.make_service(str(config_dir), reactor=reactor)
    server = Server(config_dir, root)
    globalLogPublisher.addObserver(server.observe)
    root.privilegedStartService()
    root.startService()
    for name in ("pop3", "pop3s"):
        try:
            listener = root.getServiceNamed(name)
        except KeyError:
            continue
        port = await list(listener)[0]._waitingForPort
        server.ports[name] = port.getHost().port
    return server


async def stop(server):
    globalLogPublisher.removeObserver(server.observe)
    await server.root.stopService()


def message(subject, body="Hello.\n", extra=""):
    """Return a small LF-terminated test message."""
    return ("From: sender@example.test\nTo: joe@example.test\nSubject: %s\n%s\n%s"
            % (subject, extra, body)).encode()


def maildir_path(server, user):
    return server.mailbox(user).root


def files_in(path):
    return sorted(os.listdir(os.path.join(path, "cur")) + os.listdir(os.path.join(path, "new")))


def non_loopback_address():
    """Return an IPv4 address of this machine that is not loopback, or None (tests then skip)."""
    import socket
    for probe in ("198.51.100.1", "192.0.2.200", "10.255.255.254", "172.31.255.254"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                address = sock.getsockname()[0]
        except OSError:
            continue
        if not address.startswith("127."):
            return address
    return None
