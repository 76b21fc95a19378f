"""Fixtures for the IMAP server tests: a real imapd on loopback and stdlib/imapclient clients.

``imap_server`` starts the ``imapd`` program from a config made by
``mailstack init`` (``imap`` with STARTTLS and ``imaps`` with implicit TLS,
both on 127.0.0.1 with OS-chosen ports), with two users in the passwd-file.
Clients run in threads (``deferToThread``) so the reactor keeps serving.
"""

import imaplib
import ssl

import pytest_twisted
from twisted.internet import reactor, threads

from mailstack import app

USERS = {"alice@example.test": "secret-alice", "bob@example.test": "secret-bob"}


class Server:
    """A running imapd and helpers to talk to it."""

    def __init__(self, root, config_dir):
        self.root = root
        self.config_dir = config_dir
        self.ports = {}
        self.factories = {}

    def client(self, user="alice@example.test", login=True, timeout=10):
        """Return an imaplib client on the plain port, logged in as ``user`` unless ``login`` is False."""
        client = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=timeout)
        if login:
            client.login(user, USERS[user])
        return client

    def tls_client(self, user="alice@example.test", login=True):
        context = ssl.create_default_context(cafile=str(self.config_dir / "tls" / "ca.pem"))
        client = imaplib.IMAP4_SSL("localhost", self.ports["imaps"], ssl_context=context, timeout=10)
        if login:
            client.login(user, USERS[user])
        return client

    def maildir(self, user="alice@example.test"):
        local, _, domain = user.partition("@")
        return self.config_dir / "mail" / domain / local / "Maildir"


def add_users(config_dir, extra_main_cf=""):
    with open(config_dir / "passwd", "a") as handle:
        for user, password in USERS.items():
            handle.write("%s:{PLAIN}%s::::::\n" % (user, password))
    if extra_main_cf:
        with open(config_dir / "main.cf", "a") as handle:
            handle.write(extra_main_cf)


async def start_server(config_dir, master_cf=None):
    (config_dir / "master.cf").write_text(master_cf or (
        "imap tcp:0:interface=127.0.0.1\n"
        "imaps ssl:0:interface=127.0.0.1\n"))
    root = app.make_service(str(config_dir), reactor=reactor)
    root.privilegedStartService()
    root.startService()
    server = Server(root, config_dir)
    for name in ("imap", "imaps"):
        try:
            listener = root.getServiceNamed(name)
        except KeyError:
            continue
        port = await list(listener)[0]._waitingForPort
        server.ports[name] = port.getHost().port
        factory = list(listener)[0].factory
        server.factories[name] = getattr(factory, "wrappedFactory", factory)
    return server


@pytest_twisted.async_yield_fixture
async def imap_server(config_dir):
    """A running imapd (imap + imaps) with users alice and bob."""
    add_users(config_dir, "auth_failure_delay = 0\nmail_fsync = never\n")
    server = await start_server(config_dir)
    yield server
    await server.root.stopService()
    from mailstack.store import store as mailstore
    mailstore.shared(server.root.ctx).close()


def in_thread(function, *args, **kwargs):
    """Run a blocking client call in a thread; returns a Deferred."""
    return threads.deferToThread(function, *args, **kwargs)


def threaded(function):
    """Run a blocking test body ``function(imap_server)`` in a thread under pytest-twisted."""
    import functools

    @functools.wraps(function)
    @pytest_twisted.ensureDeferred
    async def wrapper(imap_server):
        await in_thread(function, imap_server)

    return wrapper


def connect(server, user="alice@example.test", login=True, tls=False):
    """Return a raw :class:`~tests.imapd.client.Conn`, logged in as ``user`` unless ``login`` is False."""
    from tests.imapd.client import Conn, client_tls_context
    if tls:
        conn = Conn(server.ports["imaps"], tls_context=client_tls_context(server.config_dir / "tls" / "ca.pem"))
    else:
        conn = Conn(server.ports["imap"])
    if login:
        conn.login(user, USERS[user])
    return conn
