"""The cred seam: checker and realm behind a real POP3 server on loopback, talked to by poplib."""

import poplib
import socket
import time

import pytest
import pytest_twisted
from twisted.cred import error
from twisted.cred.credentials import UsernamePassword
from twisted.internet import endpoints, protocol, reactor, threads
from twisted.mail import pop3

from mailstack.auth.cred import (AuthServiceChecker, LoginCredentials, SASLCompleted, TemporaryLoginFailure,
                                 make_portal)
from mailstack.auth.request import SASLStep
from mailstack.auth.service import AuthRequest, AuthService
from tests.auth.helpers import REQUEST, run_sasl, write_config


class UserMailbox(pop3.Mailbox):
    """An empty mailbox that remembers whose it is."""

    def __init__(self, info):
        self.info = info

    def listMessages(self, i=None):
        return [] if i is None else 0


class RequestPOP3(pop3.POP3):
    """POP3 that passes the client's address to the checker, as mailstack's pop3d does."""

    def authenticateUserPASS(self, user, password):
        peer = self.transport.getPeer()
        request = AuthRequest("pop3", peer.host, self.transport.getHost().host,
                              secure=self.factory.auth.is_secure_connection(peer.host, False))
        return self.portal.login(LoginCredentials(user, password, request), None, pop3.IMailbox)


@pytest.fixture
def auth(tmp_path):
    config = write_config(tmp_path, "auth_failure_delay = 0.2s\nauth_mechanisms = plain scram-sha-256\n"
                                    "mail_location = maildir:/srv/%d/%n/Maildir\n",
                          "joe@example.com:{PLAIN}secret:1000:1000::::\n")
    return AuthService(config, reactor)


async def _pop3_server(auth, interface="127.0.0.1"):
    """Listen with RequestPOP3 behind make_portal on ``interface``, port 0; return the listening port."""
    factory = protocol.ServerFactory.forProtocol(RequestPOP3)
    factory.auth = auth
    portal = make_portal(auth, lambda info, iface: UserMailbox(info), [pop3.IMailbox], service="pop3")

    def build(addr):
        proto = RequestPOP3()
        proto.factory = factory
        proto.portal = portal
        return proto

    factory.buildProtocol = build
    return await endpoints.TCP4ServerEndpoint(reactor, 0, interface=interface).listen(factory)


class SourcePOP3(poplib.POP3):
    """poplib.POP3 connecting from a chosen local address (poplib has no source_address)."""

    source = "127.0.0.1"

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


def _pop3_login(host, port, password, source="127.0.0.1"):
    """Log in with poplib from ``source``; return (status, seconds PASS took, detail)."""
    client_class = type("POP3From", (SourcePOP3,), {"source": source})
    client = client_class(host, port, timeout=10)
    try:
        client.user("joe@example.com")
        started = time.monotonic()
        try:
            client.pass_(password)
        except poplib.error_proto as err:
            return "refused", time.monotonic() - started, str(err)
        return "ok", time.monotonic() - started, client.stat()
    finally:
        client.quit()


@pytest_twisted.ensureDeferred
async def test_brute_force_over_loopback_slows_only_the_attacker(tmp_path):
    """Real sockets, real time: one address's failures wait 0.2, 0.4, 0.8 s; another address logs in at once."""
    config = write_config(tmp_path, "auth_failure_delay = 0.2s\nauth_failure_delay_max = 0.8s\n",
                          "joe@example.com:{PLAIN}secret::::::\n")
    port = await _pop3_server(AuthService(config, reactor))
    try:
        number = port.getHost().port
        waits = []
        for _ in range(3):
            # The attacker connects from 127.0.0.2 (Linux routes all of 127/8 to loopback).
            status, elapsed, _ = await threads.deferToThread(_pop3_login, "127.0.0.1", number, "guess", "127.0.0.2")
            assert status == "refused"
            waits.append(elapsed)
            status, honest, _ = await threads.deferToThread(_pop3_login, "127.0.0.1", number, "secret", "127.0.0.1")
            assert status == "ok" and honest < 0.2
        assert waits[0] >= 0.2 and waits[1] >= 0.4 and waits[2] >= 0.8
        assert waits[2] > waits[0]
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_pop3_login_through_portal_over_loopback(auth):
    """poplib logs in through the checker and realm; a wrong password is refused after the delay."""
    port = await _pop3_server(auth)
    try:
        number = port.getHost().port

        def session(password):
            client = poplib.POP3("127.0.0.1", number, timeout=10)
            try:
                client.user("JOE@example.com")
                started = time.monotonic()
                try:
                    client.pass_(password)
                except poplib.error_proto as err:
                    return "refused", time.monotonic() - started, str(err)
                return "ok", time.monotonic() - started, client.stat()
            finally:
                client.quit()

        status, _, stat = await threads.deferToThread(session, "secret")
        assert status == "ok" and stat == (0, 0)
        status, elapsed, message = await threads.deferToThread(session, "wrong")
        assert status == "refused" and elapsed >= 0.2
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_realm_builds_avatar_from_userdb(auth):
    """The avatar factory receives the userdb's UserInfo; logout is returned too."""
    seen = []
    portal = make_portal(auth, lambda info, iface: seen.append(info) or (UserMailbox(info), lambda: None),
                         [pop3.IMailbox])
    interface, avatar, logout = await portal.login(LoginCredentials("joe@example.com", "secret", REQUEST), None,
                                                   pop3.IMailbox)
    assert interface is pop3.IMailbox and avatar.info.mail == "maildir:/srv/example.com/joe/Maildir"
    assert seen[0].uid == 1000 and callable(logout)


@pytest_twisted.ensureDeferred
async def test_checker_accepts_completed_sasl(auth):
    """A successful SASL conversation's step is accepted as credentials; a failed one is not."""
    checker = AuthServiceChecker(auth, "smtp")
    step = await run_sasl(auth, "SCRAM-SHA-256", "joe@example.com", "secret")
    assert await checker.requestAvatarId(SASLCompleted(step)) == "joe@example.com"
    with pytest.raises(error.UnauthorizedLogin):
        await checker.requestAvatarId(SASLCompleted(SASLStep("failure", reason="x")))
    with pytest.raises(TemporaryLoginFailure):
        await checker.requestAvatarId(SASLCompleted(SASLStep("failure", reason="x", temporary=True)))


@pytest_twisted.ensureDeferred
async def test_checker_with_plain_twisted_credentials(tmp_path):
    """Twisted's own UsernamePassword (bytes) works; without a request it counts as insecure."""
    config = write_config(tmp_path, "disable_plaintext_auth = no\n", "joe:{PLAIN}secret::::::\n")
    checker = AuthServiceChecker(AuthService(config, reactor), "imap")
    assert await checker.requestAvatarId(UsernamePassword(b"joe", b"secret")) == "joe"
    with pytest.raises(error.UnauthorizedLogin):
        await checker.requestAvatarId(UsernamePassword(b"joe", b"nope"))


def test_login_credentials_hide_password():
    """repr never shows the password."""
    creds = LoginCredentials("joe", "hunter2", REQUEST)
    assert "hunter2" not in repr(creds) and creds.checkPassword("hunter2")


