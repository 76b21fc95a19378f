"""A real SMTP server on 127.0.0.1:0 for tests, with its queue and a log capture.

``server = await start_smtpd(config_dir, **overrides)`` builds the service
exactly as master.cf would (auth, tables, queue, cleanup from the shared
context), listens on an OS-chosen loopback port and records every
mailstack log line.  Clients are stdlib ``smtplib`` run in a thread
(:func:`in_thread`) or raw sockets (:func:`raw_session`).
"""

import glob
import os
import smtplib
import socket

from twisted.internet import reactor, threads
from twisted.logger import formatEvent, globalLogPublisher

from mailstack import app
from mailstack.config import maincf
from mailstack.queue import qfile
from mailstack.smtpd.service import SMTPServerFactory, build_server

# Test defaults: no error delays (they are tested with a Clock), no DNS.
BASE = {"smtpd_error_sleep_time": "0", "smtpd_peername_lookup": "no"}


class LogCapture:
    """Collects formatted mailstack.* log events."""

    def __init__(self):
        self.lines = []
        globalLogPublisher.addObserver(self)

    def __call__(self, event):
        if (event.get("log_namespace") or "").startswith("mailstack"):
            self.lines.append(formatEvent(event))

    def stop(self):
        globalLogPublisher.removeObserver(self)

    def grep(self, text):
        return [line for line in self.lines if text in line]


class RunningServer:
    def __init__(self, config, ctx, server, port, logs, config_dir):
        self.config = config
        self.ctx = ctx
        self.server = server
        self.listening = port
        self.port = port.getHost().port
        self.logs = logs
        self.config_dir = config_dir

    @property
    def queue_directory(self):
        return self.config["queue_directory"]

    def queued(self, queue="incoming"):
        """Return the parsed queue files in ``queue``, oldest first."""
        paths = [p for p in glob.glob(os.path.join(self.queue_directory, queue, "*")) if not p.endswith(".tmp")]
        files = [qfile.read(p) for p in paths]
        return sorted(files, key=lambda f: f.envelope.arrival_time)

    def temp_files(self):
        return glob.glob(os.path.join(self.queue_directory, "incoming", "*.tmp"))

    async def stop(self):
        await self.listening.stopListening()
        self.logs.stop()


def make_config(config_dir, **overrides):
    config = maincf.load(str(config_dir))
    settings = [maincf.Setting(k, str(v), "test") for k, v in {**BASE, **overrides}.items()]
    return config, config.with_overrides(settings)


async def start_smtpd(config_dir, service="smtp", tls=True, implicit_tls=False, **overrides):
    """Start an SMTP service on loopback; return a :class:`RunningServer`."""
    main, config = make_config(config_dir, **overrides)
    ctx = app.ServerContext(reactor, main, str(config_dir))
    options = app.tls_options(config, "smtpd") if (tls or implicit_tls) else None
    server = build_server(ctx, config, service, options)
    factory = SMTPServerFactory(server)
    if implicit_tls:
        from twisted.protocols.tls import TLSMemoryBIOFactory
        factory = TLSMemoryBIOFactory(options, False, factory)
    logs = LogCapture()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return RunningServer(config, ctx, server, port, logs, config_dir)


def in_thread(function, *args, **kwargs):
    """Run a blocking client function in a thread; return a Deferred."""
    return threads.deferToThread(function, *args, **kwargs)


def smtp_client(port, ehlo=True):
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    if ehlo:
        client.ehlo("client.example.org")
    return client


def raw_session(port, payload, until=None, timeout=5, tls_context=None):
    """Send ``payload`` on a raw socket and read until ``until`` appears or the server closes.

    Returns:
        everything the server sent (bytes).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        data = b""
        while b"\r\n" not in data:
            data += sock.recv(4096)
        if payload:
            sock.sendall(payload)
        while until is None or until not in data:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def codes(transcript):
    """Return the reply codes of the final lines of each reply in ``transcript``."""
    return [int(line[:3]) for line in transcript.decode("utf-8", "replace").split("\r\n")
            if len(line) > 3 and line[3] == " "]
