"""The auth service: what is offered, normalisation, master users, internal failures, userdb results."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from mailstack.auth.service import AuthRequest, AuthService, UnknownMechanism, auth_service
from mailstack.auth.schemes import registry as schemes
from mailstack.config.maincf import ConfigError
from tests.auth.helpers import REQUEST, captured_log, run_sasl, service, write_config

ALL = "auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256\n"
PASSWD = ("joe@example.com:{PLAIN}secret:1000:1000::/home/joe::userdb_quota_rule=*:storage=2M\n"
          "ann@example.com:%s:1001:1001::::allow_nets=192.0.2.0/24\n"
          "boss@example.com:{PLAIN}bosspw::::::nologin reason=suspended\n" % schemes.generate("SSHA256", "annpw"))


@pytest.fixture
def auth(tmp_path):
    return service(write_config(tmp_path, ALL + "mail_location = maildir:/srv/mail/%d/%n/Maildir\n", PASSWD))


def test_mechanisms_depend_on_security(auth):
    """Plaintext mechanisms are offered only on secure connections while disable_plaintext_auth = yes."""
    assert auth.mechanisms(True) == ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    assert auth.mechanisms(False) == ["CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    with pytest.raises(UnknownMechanism, match="PLAIN"):
        auth.start("PLAIN", AuthRequest("smtp", "203.0.113.5", secure=False))
    with pytest.raises(UnknownMechanism, match="GSSAPI"):
        auth.start("GSSAPI", REQUEST)


def test_plaintext_allowed_when_configured(tmp_path):
    """disable_plaintext_auth = no offers PLAIN everywhere."""
    auth = service(write_config(tmp_path, "auth_mechanisms = plain cram-md5\ndisable_plaintext_auth = no\n", ""))
    assert auth.mechanisms(False) == ["PLAIN", "CRAM-MD5"]


def test_credential_mechanisms_hidden_when_passdb_cannot_serve(tmp_path):
    """A nopassword static passdb cannot give credentials, so CRAM-MD5/SCRAM are not advertised."""
    auth = service(write_config(tmp_path, ALL + "passdb = static:nopassword\n"))
    assert auth.mechanisms(True) == ["PLAIN", "LOGIN"]


def test_secure_connection_rules(tmp_path):
    """TLS, loopback and login_trusted_networks count as secure; other addresses do not."""
    auth = service(write_config(tmp_path, "login_trusted_networks = 10.0.0.0/8, [2001:db8::]/32\n"))
    assert auth.is_secure_connection("203.0.113.5", True)
    assert auth.is_secure_connection("127.0.0.1", False)
    assert auth.is_secure_connection("::1", False)
    assert auth.is_secure_connection("::ffff:10.1.2.3", False)
    assert auth.is_secure_connection("2001:db8::5", False)
    assert not auth.is_secure_connection("203.0.113.5", False)
    assert not auth.is_secure_connection("", False)


@pytest.mark.parametrize("main_cf,match", [
    ("auth_mechanisms = plain digest-md5\n", "unknown mechanism 'digest-md5'"),
    ("default_pass_scheme = ROT13\n", "default_pass_scheme: unknown password scheme"),
    ("passdb = ldap:/etc/ldap.conf\n", "unknown passdb driver 'ldap'"),
    ("userdb = static:uid=1\npassdb = static:\n", "static passdb needs password"),
])
def test_bad_configuration_is_reported(tmp_path, main_cf, match):
    """Unknown mechanisms, schemes and drivers are configuration errors naming the parameter."""
    with pytest.raises(ConfigError, match=match):
        service(write_config(tmp_path, main_cf))


@pytest_twisted.ensureDeferred
async def test_username_is_normalised(tmp_path):
    """Logins are lower-cased (auth_username_format = %Lu) and get auth_default_realm."""
    auth = service(write_config(tmp_path, ALL + "auth_default_realm = example.com\n", PASSWD))
    step = await auth.verify_plain("JOE", "secret", REQUEST)
    assert step.kind == "success" and step.user == "joe@example.com"
    step = await run_sasl(auth, "SCRAM-SHA-256", "Joe@Example.COM", "secret")
    assert step.kind == "success" and step.user == "joe@example.com"


@pytest_twisted.ensureDeferred
async def test_username_with_colon_is_refused(auth):
    """Names that cannot be in a passwd-file are refused before any lookup."""
    step = await auth.verify_plain("joe:x@example.com", "secret", REQUEST)
    assert step.kind == "failure" and "disallowed characters" in step.reason


@pytest_twisted.ensureDeferred
async def test_plaintext_login_refused_on_insecure_connection(auth):
    """verify_plain refuses an insecure connection when disable_plaintext_auth = yes."""
    step = await auth.verify_plain("joe@example.com", "secret", AuthRequest("pop3", "203.0.113.5"))
    assert step.kind == "failure" and "Plaintext authentication disallowed" in step.reason


@pytest_twisted.ensureDeferred
async def test_allow_nets_and_nologin(auth):
    """allow_nets limits where a user may log in from; nologin refuses with its reason."""
    assert (await auth.verify_plain("ann@example.com", "annpw", REQUEST)).kind == "success"
    with captured_log() as log:
        step = await auth.verify_plain("ann@example.com", "annpw", AuthRequest("imap", "198.51.100.1", secure=True))
    assert step.kind == "failure"
    assert log == ["passwd-file(ann@example.com,198.51.100.1): allow_nets check failed: "
                   "IP 198.51.100.1 not in allowed networks"]
    step = await auth.verify_plain("boss@example.com", "bosspw", REQUEST)
    assert step.kind == "failure" and step.reason.endswith("nologin: suspended")


@pytest_twisted.ensureDeferred
async def test_master_user_login(tmp_path):
    """A master user logs in as another user with PLAIN authzid or user*master; others cannot."""
    (tmp_path / "masters").write_text("admin:{PLAIN}masterpw::::::\n")
    auth = service(write_config(tmp_path, ALL + "auth_master_passdb = passwd-file:%s/masters\n"
                                "auth_master_user_separator = *\n" % tmp_path, PASSWD))
    with captured_log() as log:
        step = await run_sasl(auth, "PLAIN", "admin", "masterpw", authzid="joe@example.com")
    assert step.kind == "success" and step.user == "joe@example.com"
    assert log == ["passwd-file(admin,192.0.2.1): Master user logging in as joe@example.com"]
    step = await auth.verify_plain("ann@example.com*admin", "masterpw", REQUEST)
    assert step.kind == "success" and step.user == "ann@example.com"
    # A wrong master password, a non-master authcid, an unknown target: all refused.
    assert (await run_sasl(auth, "PLAIN", "admin", "bad", authzid="joe@example.com")).kind == "failure"
    assert (await run_sasl(auth, "PLAIN", "joe@example.com", "secret", authzid="ann@example.com")).kind == "failure"
    with captured_log() as log:
        step = await auth.verify_plain("ghost@example.com*admin", "masterpw", REQUEST)
    assert step.kind == "failure"
    assert log == ["passwd-file(ghost@example.com,192.0.2.1): unknown user (master user admin)"]


@pytest_twisted.ensureDeferred
async def test_internal_failure_is_temporary_and_logged_as_error(tmp_path):
    """A missing passwd-file is an internal failure (temporary), never 'unknown user'."""
    auth = service(write_config(tmp_path, ALL))
    with captured_log() as log:
        step = await auth.verify_plain("joe@example.com", "secret", REQUEST)
        sasl = await run_sasl(auth, "CRAM-MD5", "joe@example.com", "secret")
    assert step.kind == "failure" and step.temporary
    assert sasl.kind == "failure" and sasl.temporary
    assert "stat(%s/passwd) failed: No such file or directory" % tmp_path in log[0]
    assert "unknown user" not in " ".join(log)


@pytest_twisted.ensureDeferred
async def test_unknown_scheme_in_passdb_is_internal(tmp_path):
    """A stored password with an unknown scheme is our fault: temporary failure and an error log."""
    auth = service(write_config(tmp_path, ALL, "joe@example.com:{ROT13}frperg::::::\n"))
    with captured_log() as log:
        step = await auth.verify_plain("joe@example.com", "secret", REQUEST)
    assert step.temporary and "unknown password scheme 'ROT13'" in log[0]


@pytest_twisted.ensureDeferred
async def test_lookup_user_fields(auth):
    """lookup_user gives uid, gid, home, mail from mail_location and the quota in bytes."""
    info = await auth.lookup_user("JOE@example.com")
    assert (info.user, info.uid, info.gid, info.home) == ("joe@example.com", 1000, 1000, "/home/joe")
    assert info.mail == "maildir:/srv/mail/example.com/joe/Maildir"
    assert info.quota_bytes == 2 * 1024 * 1024
    ann = await auth.lookup_user("ann@example.com")
    assert ann.home == "/srv/mail/example.com/ann"
    assert await auth.lookup_user("nobody@example.com") is None


@pytest_twisted.ensureDeferred
async def test_mail_home_and_tilde(tmp_path):
    """mail_home gives the home, and ~ in mail_location expands to it."""
    auth = service(write_config(tmp_path, "mail_home = /var/vmail/%d/%n\nmail_location = maildir:~/Mail\n",
                                "joe@example.com:{PLAIN}x::::::\n"))
    info = await auth.lookup_user("joe@example.com")
    assert info.home == "/var/vmail/example.com/joe"
    assert info.mail == "maildir:/var/vmail/example.com/joe/Mail"


@pytest_twisted.ensureDeferred
async def test_real_threads_and_shared_instance(tmp_path):
    """With the real reactor, hashing runs in the thread pool and ctx.shared gives one instance."""
    from mailstack.app import ServerContext
    config = write_config(tmp_path, ALL, "joe@example.com:%s::::::\n" % schemes.generate("SHA512-CRYPT", "pw"))
    ctx = ServerContext(reactor, config, str(tmp_path))
    auth = auth_service(ctx)
    assert auth_service(ctx) is auth and isinstance(auth, AuthService)
    step = await auth.verify_plain("joe@example.com", "pw", REQUEST)
    assert step.kind == "success"


@pytest_twisted.ensureDeferred
async def test_unexpected_error_is_temporary_with_traceback(auth, monkeypatch):
    """A bug inside a lookup becomes a temporary failure and one logged traceback, never a refusal."""
    async def broken(user):
        raise ZeroDivisionError("bug")
    monkeypatch.setattr(auth.passdb, "lookup", broken)
    from twisted.logger import globalLogPublisher
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        step = await auth.verify_plain("joe@example.com", "secret", REQUEST)
        sasl = await run_sasl(auth, "PLAIN", "joe@example.com", "secret")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert step.temporary and sasl.temporary
    failures = [e for e in events if e.get("log_failure") is not None and e.get("log_namespace") == "mailstack.auth"]
    assert len(failures) == 2
    for event in failures:
        event["log_failure"].cleanFailure()


def test_log_line_in_maillog_format(auth):
    """Auth events come out as 'mailstack/auth[PID]: passwd-file(user,ip): reason' maillog lines."""
    from twisted.logger import globalLogPublisher
    from mailstack.common import maillog
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        auth._fail(REQUEST, "passwd-file", "joe@example.com", "Password mismatch")
    finally:
        globalLogPublisher.removeObserver(events.append)
    line = maillog.format_line(events[-1], "mail", pid=42)
    assert line.endswith(" mail mailstack/auth[42]: passwd-file(joe@example.com,192.0.2.1): Password mismatch")
