"""Shared helpers for auth tests: configs, a synchronous-thread service, log capture, SASL runs."""

import contextlib
import os

from twisted.internet import defer, task
from twisted.logger import formatEvent, globalLogPublisher

from mailstack.auth.mechs.client import client_for
from mailstack.auth.service import AuthRequest, AuthService
from mailstack.config import maincf

REQUEST = AuthRequest("imap", "192.0.2.1", "192.0.2.2", secure=True)


def write_config(directory, main_cf="", passwd=None):
    """Write main.cf (and optionally the passwd file) in ``directory``; return the loaded Config."""
    os.makedirs(directory, exist_ok=True)
    text = "auth_failure_delay = 0\nauth_verbose = yes\n" + main_cf
    with open(os.path.join(directory, "main.cf"), "w") as handle:
        handle.write(text)
    if passwd is not None:
        with open(os.path.join(directory, "passwd"), "w") as handle:
            handle.write(passwd)
    return maincf.load(str(directory))


def sync_threads(fn, *args):
    """run_in_thread replacement for unit tests driven by a Clock: runs ``fn`` at once."""
    return defer.maybeDeferred(fn, *args)


def service(config, clock=None):
    """An AuthService with a Clock and synchronous 'threads' (pure unit tests)."""
    return AuthService(config, None, clock=clock or task.Clock(), run_in_thread=sync_threads)


async def run_sasl(auth, mechanism, user, password, request=REQUEST, authzid=""):
    """Run a client mechanism against the service; return the final step (server data checked on success)."""
    session = auth.start(mechanism, request)
    client = client_for(mechanism, user, password, authzid)
    step = await session.step(client.start())
    while step.kind == "continue":
        step = await session.step(client.respond(step.challenge))
    if step.ok:
        client.finish(step.challenge)
    return step


@contextlib.contextmanager
def captured_log(namespace="mailstack.auth"):
    """Collect the formatted text of log events from ``namespace``."""
    lines = []

    def observer(event):
        if event.get("log_namespace", "").startswith(namespace):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    try:
        yield lines
    finally:
        globalLogPublisher.removeObserver(observer)
