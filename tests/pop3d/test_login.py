"""POP3 logins over loopback: USER/PASS, AUTH (RFC 5034), APOP, STLS, POP3S, plaintext refusal, IN-USE, logs."""

import base64
import hashlib
import poplib
import re

import pytest
import pytest_twisted

from tests.pop3d import helpers
from tests.pop3d.helpers import PASSWORDS, message

JOE, BOB = "joe@example.test", "bob@example.test"
FAST_FAILURES = "auth_failure_delay = 0s\npop3d_enable_apop = yes\n"


@pytest_twisted.async_yield_fixture
async def server(config_dir):
    server = await helpers.start(config_dir, extra_main_cf=FAST_FAILURES)
    yield server
    await helpers.stop(server)


def _err(function, *args):
    try:
        function(*args)
    except poplib.error_proto as err:
        return err.args[0].decode()
    raise AssertionError("expected -ERR from %s" % function.__name__)


def _b64(data):
    return base64.b64encode(data).decode()


@pytest_twisted.ensureDeferred
async def test_user_pass_and_login_log(server):
    """USER/PASS logs in (a password with spaces too); the login and logout are logged as Dovecot does."""
    server.deliver("ann@example.test", message("hi"))

    def talk():
        client = server.client()
        client.user("ann@example.test")
        ok = client.pass_(PASSWORDS["ann@example.test"])
        client.retr(1)
        client.quit()
        return ok
    assert await server.in_thread(talk) == b"+OK Logged in."
    log = server.log_text()
    assert re.search(r"pop3-login: Login: user=<ann@example.test>, method=PLAIN, rip=127.0.0.1, "
                     r"lip=127.0.0.1, secured$", log, re.M), log
    assert re.search(r"pop3\(ann@example.test\): Disconnected: Logged out top=0/0, retr=1/\d+, del=0/1, "
                     r"size=\d+$", log, re.M), log


@pytest_twisted.ensureDeferred
async def test_wrong_password_auth_code_and_disconnect(server):
    """A bad password gets -ERR [AUTH]; the third failure closes the connection and is logged."""
    def talk():
        client = server.client()
        answers = []
        for _ in range(3):
            client.user(JOE)
            answers.append(_err(client.pass_, "wrong"))
        try:
            client.noop()
            closed = False
        except (poplib.error_proto, OSError):
            closed = True
        client.close()
        return answers, closed
    answers, closed = await server.in_thread(talk)
    assert answers == ["-ERR [AUTH] Authentication failed."] * 3
    assert closed
    await_log = server.log_text()
    assert re.search(r"pop3-login: Disconnected \(auth failed, 3 attempts in \d+ secs\): "
                     r"user=<joe@example.test>, method=PLAIN, rip=127.0.0.1", await_log), await_log


@pytest_twisted.ensureDeferred
async def test_auth_plain_initial_response_and_login_continuation(server):
    """AUTH PLAIN with an initial response, AUTH LOGIN with challenges, and AUTH listing the mechanisms."""
    def talk():
        results = []
        client = server.client()
        results.append(client._longcmd("AUTH"))
        results.append(client._shortcmd("AUTH PLAIN " + _b64(b"\0" + JOE.encode() + b"\0secret")))
        client.quit()

        client = server.client()
        results.append(client._shortcmd("AUTH LOGIN"))
        results.append(client._shortcmd(_b64(JOE.encode())))
        results.append(client._shortcmd(_b64(b"secret")))
        results.append(client.stat())
        client.quit()
        return results
    listing, plain, first, second, done, stat = await server.in_thread(talk)
    assert listing[1] == [b"PLAIN", b"LOGIN"]
    assert plain == b"+OK Logged in."
    assert first == b"+ " + base64.b64encode(b"Username:")
    assert second == b"+ " + base64.b64encode(b"Password:")
    assert done == b"+OK Logged in."
    assert stat == (0, 0)
    assert "method=LOGIN" in server.log_text()


@pytest_twisted.ensureDeferred
async def test_auth_errors(server):
    """Unknown mechanisms, bad base64, a client abort ('*') and a bad SASL password are refused."""
    def talk():
        client = server.client()
        out = [
            _err(client._shortcmd, "AUTH CRAM-MD5"),
            _err(client._shortcmd, "AUTH PLAIN !!notbase64"),
        ]
        client._shortcmd("AUTH PLAIN")  # "+ " asks for the response
        out.append(_err(client._shortcmd, "*"))
        out.append(_err(client._shortcmd, "AUTH PLAIN " + _b64(b"\0joe@example.test\0nope")))
        out.append("alive" if "USER" in client.capa() else "dead")
        client.quit()
        return out
    out = await server.in_thread(talk)
    assert out == ["-ERR [AUTH] Unsupported authentication mechanism.",
                   "-ERR [AUTH] Invalid base64 data in initial response.",
                   "-ERR [AUTH] Authentication aborted by client.",
                   "-ERR [AUTH] Authentication failed.",
                   "alive"]


@pytest_twisted.ensureDeferred
async def test_apop_for_plaintext_scheme_only(server):
    """APOP works for a {PLAIN} user, fails for a hashed one, and the greeting carries a timestamp."""
    def talk():
        client = server.client()
        welcome = client.getwelcome()
        ok = client.apop(JOE, PASSWORDS[JOE])
        client.quit()
        client = server.client()
        hashed = _err(client.apop, BOB, PASSWORDS[BOB])
        client.quit()
        client = server.client()
        wrong = _err(client.apop, JOE, "not-it")
        client.quit()
        return welcome, ok, hashed, wrong
    welcome, ok, hashed, wrong = await server.in_thread(talk)
    timestamp = re.search(rb"<[^>]+@[^>]+>", welcome).group(0)
    assert timestamp.endswith(b"@mail.example.test>")
    assert ok == b"+OK Logged in."
    assert hashed == wrong == "-ERR [AUTH] Authentication failed."
    assert "method=APOP" in server.log_text()


@pytest_twisted.ensureDeferred
async def test_apop_off_by_default(config_dir):
    """Without pop3d_enable_apop the greeting has no timestamp and APOP is refused."""
    server = await helpers.start(config_dir)
    try:
        def talk():
            client = server.client()
            welcome = client.getwelcome()
            digest = hashlib.md5(b"x").hexdigest()
            refused = _err(client._shortcmd, "APOP %s %s" % (JOE, digest))
            client.quit()
            return welcome, refused
        welcome, refused = await server.in_thread(talk)
    finally:
        await helpers.stop(server)
    assert b"<" not in welcome
    assert refused.startswith("-ERR [AUTH] APOP is not enabled")


@pytest_twisted.ensureDeferred
async def test_in_use_lock(server):
    """A second POP3 session of the same user gets -ERR [IN-USE]; after QUIT the mailbox is free again."""
    server.deliver(JOE, message("locked"))

    def talk():
        first = server.client()
        first.user(JOE)
        first.pass_(PASSWORDS[JOE])
        second = server.client("pop3s")
        second.user(JOE)
        refused = _err(second.pass_, PASSWORDS[JOE])
        first.quit()
        second.user(JOE)
        ok = second.pass_(PASSWORDS[JOE])
        stat = second.stat()
        second.quit()
        return refused, ok, stat
    refused, ok, stat = await server.in_thread(talk)
    assert refused == "-ERR [IN-USE] Mailbox is locked by another POP3 session."
    assert ok == b"+OK Logged in."
    assert stat[0] == 1


@pytest_twisted.ensureDeferred
async def test_pop3s_with_init_certificate(server):
    """POP3S completes a verified TLS handshake with init's CA, offers no STLS, and logs TLS."""
    server.deliver(JOE, message("tls"))

    def talk():
        client = server.client("pop3s")
        caps = client.capa()
        client.user(JOE)
        client.pass_(PASSWORDS[JOE])
        lines = client.retr(1)[1]
        client.quit()
        return caps, lines
    caps, lines = await server.in_thread(talk)
    assert "STLS" not in caps
    assert b"Subject: tls" in lines
    assert re.search(r"Login: user=<joe@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, TLS$",
                     server.log_text(), re.M)


@pytest_twisted.ensureDeferred
async def test_stls_then_login(server):
    """STLS upgrades a plain connection (verified with init's CA); CAPA then no longer offers STLS."""
    def talk():
        client = server.client()
        answer = client.stls(server.tls_context())
        caps = client.capa()
        again = _err(client._shortcmd, "STLS")
        client.user(JOE)
        ok = client.pass_(PASSWORDS[JOE])
        client.quit()
        return answer, caps, again, ok
    answer, caps, again, ok = await server.in_thread(talk)
    assert answer == b"+OK Begin TLS negotiation now."
    assert "STLS" not in caps and "USER" in caps
    assert again.startswith("-ERR")
    assert ok == b"+OK Logged in."
    assert "lip=127.0.0.1, TLS" in server.log_text()


@pytest_twisted.ensureDeferred
async def test_stls_discards_pipelined_commands(server):
    """Commands sent together with STLS are not executed after the handshake (RFC 2595 §3.1)."""
    import socket

    def talk():
        sock = socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=10)
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"STLS\r\nUSER joe@example.test\r\nPASS secret\r\n")
        answer = reader.readline()
        tls = server.tls_context().wrap_socket(sock, server_hostname="localhost")
        tls_reader = tls.makefile("rb")
        tls.sendall(b"STAT\r\n")
        stat = tls_reader.readline()
        tls.sendall(b"QUIT\r\n")
        tls_reader.readline()
        tls.close()
        return answer, stat
    answer, stat = await server.in_thread(talk)
    assert answer == b"+OK Begin TLS negotiation now.\r\n"
    assert stat.startswith(b"-ERR Unknown command in this state: STAT")


@pytest_twisted.ensureDeferred
async def test_plaintext_refused_on_insecure_connection(config_dir):
    """From a non-loopback, untrusted address, USER and AUTH PLAIN are refused until STLS."""
    address = helpers.non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    server = await helpers.start(config_dir, master_cf="pop3 tcp:0:interface=%s\n" % address,
                                 extra_main_cf=FAST_FAILURES)
    try:
        def talk():
            client = poplib.POP3(address, server.ports["pop3"], timeout=10)
            caps = client.capa()
            refused = _err(client.user, JOE)
            sasl = _err(client._shortcmd, "AUTH PLAIN " + _b64(b"\0joe@example.test\0secret"))
            pass_refused = _err(client.pass_, "secret")
            context = server.tls_context()
            context.check_hostname = False  # init's certificate names localhost and 127.0.0.1, not this address
            client.stls(context)
            caps_after = client.capa()
            client.user(JOE)
            ok = client.pass_(PASSWORDS[JOE])
            client.quit()
            return caps, refused, sasl, pass_refused, caps_after, ok
        caps, refused, sasl, pass_refused, caps_after, ok = await server.in_thread(talk)
    finally:
        await helpers.stop(server)
    disallowed = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
    assert "USER" not in caps and "SASL" not in caps and "STLS" in caps
    assert refused == sasl == pass_refused == disallowed
    assert "USER" in caps_after and caps_after["SASL"] == ["PLAIN", "LOGIN"]
    assert ok == b"+OK Logged in."
    assert "rip=%s, lip=%s, TLS" % (address, address) in server.log_text()


@pytest.mark.parametrize("where", ["main.cf", "master.cf"])
@pytest_twisted.ensureDeferred
async def test_plaintext_allowed_when_disabled(config_dir, where):
    """With disable_plaintext_auth = no (main.cf, or -o on the service), USER/PASS works on an insecure connection."""
    address = helpers.non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    if where == "main.cf":
        server = await helpers.start(config_dir, master_cf="pop3 tcp:0:interface=%s\n" % address,
                                     extra_main_cf="disable_plaintext_auth = no\n")
    else:
        server = await helpers.start(
            config_dir, master_cf="pop3 tcp:0:interface=%s -o disable_plaintext_auth=no\n" % address)
    try:
        def talk():
            client = poplib.POP3(address, server.ports["pop3"], timeout=10)
            client.user(JOE)
            ok = client.pass_(PASSWORDS[JOE])
            client.quit()
            return ok
        assert await server.in_thread(talk) == b"+OK Logged in."
    finally:
        await helpers.stop(server)
    assert "rip=%s, lip=%s\n" % (address, address) in server.log_text() + "\n"


def _sasl(client, mechanism, user, password):
    """Run AUTH MECHANISM with mailstack's SASL client over poplib; return the final reply."""
    from mailstack.auth.mechs.client import client_for
    sasl = client_for(mechanism, user, password)
    initial = sasl.start()
    command = "AUTH " + mechanism
    if initial is not None:
        command += " " + (_b64(initial) or "=")
    reply = client._shortcmd(command)
    while reply.startswith(b"+ ") or reply == b"+":
        challenge = base64.b64decode(reply[2:])
        if challenge.startswith(b"v="):
            sasl.finish(challenge)  # SCRAM's server signature: checked by the client
            reply = client._shortcmd("")
        else:
            reply = client._shortcmd(_b64(sasl.respond(challenge)))
    return reply


@pytest.mark.parametrize("mechanism", ["CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest_twisted.ensureDeferred
async def test_challenge_response_mechanisms(config_dir, mechanism):
    """CRAM-MD5 and SCRAM work through AUTH; SCRAM's final server data goes as a last challenge (RFC 5034)."""
    server = await helpers.start(
        config_dir, extra_main_cf="auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256\n")
    try:
        def talk():
            client = server.client()
            caps = client.capa()
            reply = _sasl(client, mechanism, JOE, PASSWORDS[JOE])
            stat = client.stat()
            client.quit()
            return caps, reply, stat
        caps, reply, stat = await server.in_thread(talk)
    finally:
        await helpers.stop(server)
    assert mechanism in caps["SASL"]
    assert reply == b"+OK Logged in."
    assert stat == (0, 0)
    assert "method=%s" % mechanism in server.log_text()


@pytest_twisted.ensureDeferred
async def test_in_use_by_another_process(server):
    """A POP3 session lock held by another process (another mailstack) gives -ERR [IN-USE] here."""
    import subprocess
    import sys

    from tests.conftest import subprocess_env
    server.deliver(JOE, message("elsewhere"))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from mailstack.pop3d.lock import SessionLocks\n"
         "lock = SessionLocks().acquire(sys.argv[1])\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n", server.mailbox(JOE).root],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == "locked"

        def talk():
            client = server.client()
            client.user(JOE)
            refused = _err(client.pass_, PASSWORDS[JOE])
            client.quit()
            return refused
        assert await server.in_thread(talk) == "-ERR [IN-USE] Mailbox is locked by another POP3 session."
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()
    assert "Couldn't open INBOX: in use by another POP3 session (process lock)" in server.log_text()
