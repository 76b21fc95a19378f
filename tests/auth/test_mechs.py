"""SASL mechanisms, server and client sides: RFC vectors, parsing, authzid handling."""

import base64

import pytest
import pytest_twisted

from mailstack.auth.mechs import client as clients
from mailstack.auth.mechs.base import Credentials
from mailstack.auth.mechs.cram_md5 import CramMD5Mechanism
from mailstack.auth.mechs.scram import ScramMechanism
from mailstack.auth.request import failure, success
from mailstack.auth.schemes import cram_md5, scram
from tests.auth.helpers import REQUEST, captured_log, run_sasl, service, write_config

# RFC 5802 §5 and RFC 7677 §3 example conversations (user "user", password "pencil").
RFC5802 = {
    "algorithm": "sha1", "scheme": "SCRAM-SHA-1", "cnonce": "fyko+d2lbbFgONRv9qkxdawL",
    "snonce": "3rfcNHYJY1ZVvWVs7j", "salt": "QSXCR+Q6sek8bf92",
    "proof": "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "verifier": "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
}
RFC7677 = {
    "algorithm": "sha256", "scheme": "SCRAM-SHA-256", "cnonce": "rOprNGfwEbeRWgbNEkqO",
    "snonce": "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", "salt": "W22ZaJ0SNY7soEsUEjb6gQ==",
    "proof": "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "verifier": "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
}


class FixedBackend:
    """A backend holding one user's credentials, recording how the conversation ended."""

    hostname = "mail.example.test"

    def __init__(self, user, raw):
        self._creds = Credentials(user, raw)
        self.ended = None

    async def credentials(self, authcid, scheme):
        assert authcid == self._creds.user
        return self._creds

    def succeed(self, user, data=b""):
        self.ended = ("success", user)
        return success(user, data)

    def fail(self, user, reason, temporary=False):
        self.ended = ("failure", reason)
        return failure(reason, user, temporary)


@pytest.mark.parametrize("vector", [RFC5802, RFC7677], ids=["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_client_matches_rfc_example(vector):
    """The SCRAM client produces the RFC's client-final-message and accepts its verifier."""
    client = clients.ScramClient(vector["algorithm"], "user", "pencil", nonce=vector["cnonce"])
    assert client.start() == ("n,,n=user,r=%s" % vector["cnonce"]).encode()
    server_first = "r=%s%s,s=%s,i=4096" % (vector["cnonce"], vector["snonce"], vector["salt"])
    final = client.respond(server_first.encode()).decode()
    assert final == "c=biws,r=%s%s,p=%s" % (vector["cnonce"], vector["snonce"], vector["proof"])
    client.finish(("v=" + vector["verifier"]).encode())
    with pytest.raises(clients.ClientError, match="does not verify"):
        client.finish(b"v=" + base64.b64encode(b"x" * 20))


@pytest.mark.parametrize("vector", [RFC5802, RFC7677], ids=["SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest_twisted.ensureDeferred
async def test_scram_server_matches_rfc_example(vector):
    """The SCRAM server, given the RFC's salt and nonce, answers with the RFC's messages."""
    creds = scram.credentials(vector["algorithm"], b"pencil", base64.b64decode(vector["salt"]), 4096)
    backend = FixedBackend("user", scram.format_credentials(creds))
    server = ScramMechanism(backend, vector["algorithm"], vector["scheme"], server_nonce=lambda: vector["snonce"])
    first = await server.step(("n,,n=user,r=%s" % vector["cnonce"]).encode())
    assert first.kind == "continue"
    assert first.challenge.decode() == "r=%s%s,s=%s,i=4096" % (vector["cnonce"], vector["snonce"], vector["salt"])
    final = await server.step(("c=biws,r=%s%s,p=%s" % (vector["cnonce"], vector["snonce"], vector["proof"])).encode())
    assert final.kind == "success" and final.user == "user"
    assert final.challenge == ("v=" + vector["verifier"]).encode()


@pytest.mark.parametrize("message,reason", [
    (b"p=tls-unique,,n=user,r=abc", "channel binding is not supported"),
    (b"x,,n=user,r=abc", "bad GS2 header"),
    (b"n,,r=abc,n=user", "must start with n=...,r=..."),
    (b"n,,n=us=er,r=abc", "bad escape"),
    (b"n,,m=ext,n=user,r=abc", "must start with"),
], ids=["cbind", "gs2", "order", "escape", "extension"])
@pytest_twisted.ensureDeferred
async def test_scram_refuses_bad_client_first(message, reason):
    """Malformed client-first messages end the conversation with an 'invalid input' reason."""
    backend = FixedBackend("user", scram.format_credentials(scram.credentials("sha256", b"pencil")))
    step = await ScramMechanism(backend, "sha256", "SCRAM-SHA-256").step(message)
    assert step.kind == "failure" and reason in step.reason and "invalid input" in step.reason


@pytest_twisted.ensureDeferred
async def test_scram_refuses_wrong_nonce_and_cbind_data():
    """A client-final with a changed nonce or channel-binding data is refused."""
    creds = scram.format_credentials(scram.credentials("sha1", b"pencil"))
    for tamper in ("nonce", "cbind"):
        server = ScramMechanism(FixedBackend("user", creds), "sha1", "SCRAM-SHA-1")
        client = clients.ScramClient("sha1", "user", "pencil")
        first = await server.step(client.start())
        final = client.respond(first.challenge).decode()
        if tamper == "nonce":
            final = final.replace(",r=", ",r=X")
        else:
            final = final.replace("c=biws", "c=eSws")
        step = await server.step(final.encode())
        assert step.kind == "failure", tamper
        assert ("wrong nonce" if tamper == "nonce" else "channel binding data") in step.reason


@pytest_twisted.ensureDeferred
async def test_scram_y_flag_is_accepted():
    """A client that supports channel binding but sees none offered (GS2 'y,,') may log in."""
    creds = scram.format_credentials(scram.credentials("sha256", b"pencil"))
    server = ScramMechanism(FixedBackend("user", creds), "sha256", "SCRAM-SHA-256")
    client = clients.ScramClient("sha256", "user", "pencil", cbind_flag="y")
    first = await server.step(client.start())
    step = await server.step(client.respond(first.challenge))
    assert step.kind == "success"
    client.finish(step.challenge)


@pytest_twisted.ensureDeferred
async def test_cram_md5_server_with_rfc2195_example():
    """The CRAM-MD5 server accepts RFC 2195's example answer from the stored context."""
    backend = FixedBackend("tim", cram_md5.generate(b"tanstaaftanstaaf"))
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    server = CramMD5Mechanism(backend, challenge=challenge)
    first = await server.step(None)
    assert first.challenge == challenge
    client = clients.CramMD5Client("tim", "tanstaaftanstaaf")
    assert client.respond(challenge) == b"tim b913a602c7eda7a495b4e6e7334d3890"
    step = await server.step(b"tim b913a602c7eda7a495b4e6e7334d3890")
    assert step.kind == "success" and step.user == "tim"


@pytest_twisted.ensureDeferred
async def test_cram_md5_challenge_names_host_and_is_unique():
    """CRAM-MD5 challenges are <...@myhostname> and differ between conversations."""
    backend = FixedBackend("tim", cram_md5.generate(b"x"))
    one = (await CramMD5Mechanism(backend).step(None)).challenge
    two = (await CramMD5Mechanism(backend).step(None)).challenge
    assert one != two
    assert one.startswith(b"<") and one.endswith(b"@mail.example.test>")


@pytest.fixture
def auth(tmp_path):
    passwd = "joe@example.com:{PLAIN}secret::::::\nann@example.com:{SHA256-CRYPT}%s::::::\n" % (
        "$5$M7BQTuvDZABXj7Ep$12T4JXrJbs.xvXhMwUWV9s7PVXc5CYacBQI.76GdsO8")
    return service(write_config(tmp_path, "auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256\n",
                                passwd))


@pytest_twisted.ensureDeferred
async def test_plain_with_own_authzid(auth):
    """PLAIN with an authzid equal to the authcid is an ordinary login."""
    step = await run_sasl(auth, "PLAIN", "joe@example.com", "secret", authzid="joe@example.com")
    assert step.kind == "success" and step.user == "joe@example.com"
    step = await run_sasl(auth, "PLAIN", "Joe@Example.com", "secret", authzid="JOE@example.com")
    assert step.kind == "success" and step.user == "joe@example.com"


@pytest_twisted.ensureDeferred
async def test_plain_with_other_authzid_needs_master_passdb(auth):
    """PLAIN acting as another user is refused without master users, and logged why."""
    with captured_log() as log:
        step = await run_sasl(auth, "PLAIN", "joe@example.com", "secret", authzid="ann@example.com")
    assert step.kind == "failure"
    assert log == ["login(joe@example.com,192.0.2.1): Master user login attempted without master passdbs"]


@pytest.mark.parametrize("data,reason", [
    (b"joe\0secret", "expected 3 NUL-separated fields"),
    (b"\0\0secret", "empty authcid"),
    (b"\0joe\0\xff", "not valid UTF-8"),
])
@pytest_twisted.ensureDeferred
async def test_plain_invalid_input(auth, data, reason):
    """Malformed PLAIN data fails as invalid input."""
    session = auth.start("PLAIN", REQUEST)
    step = await session.step(data)
    assert step.kind == "failure" and reason in step.reason


@pytest_twisted.ensureDeferred
async def test_plain_without_initial_response(auth):
    """PLAIN without an initial response gets an empty challenge, then works."""
    session = auth.start("plain", REQUEST)
    first = await session.step(None)
    assert first.kind == "continue" and first.challenge == b""
    step = await session.step(b"\0joe@example.com\0secret")
    assert step.kind == "success"


@pytest_twisted.ensureDeferred
async def test_login_prompts_and_initial_response(auth):
    """LOGIN asks Username:/Password:, and takes an initial response as the user name."""
    session = auth.start("LOGIN", REQUEST)
    assert (await session.step(None)).challenge == b"Username:"
    assert (await session.step(b"joe@example.com")).challenge == b"Password:"
    assert (await session.step(b"secret")).kind == "success"
    session = auth.start("LOGIN", REQUEST)
    assert (await session.step(b"joe@example.com")).challenge == b"Password:"
    assert (await session.step(b"secret")).user == "joe@example.com"


@pytest_twisted.ensureDeferred
async def test_scram_authzid_other_user_is_refused(auth):
    """SCRAM with an a= naming someone else is refused."""
    step = await run_sasl(auth, "SCRAM-SHA-256", "joe@example.com", "secret", authzid="ann@example.com")
    assert step.kind == "failure" and "does not support master users" in step.reason


@pytest_twisted.ensureDeferred
async def test_session_cannot_continue_after_end(auth):
    """A finished conversation refuses further steps."""
    session = auth.start("PLAIN", REQUEST)
    assert (await session.step(b"\0joe@example.com\0secret")).kind == "success"
    assert (await session.step(b"\0joe@example.com\0secret")).kind == "failure"


def test_client_for_unknown_mechanism():
    """client_for names the mechanism it cannot do."""
    with pytest.raises(ValueError, match="GSSAPI"):
        clients.client_for("GSSAPI", "u", "p")
