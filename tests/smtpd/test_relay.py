"""Relay control and recipient validation: the decision matrix, reject replies and log lines."""

import base64

import pytest
import pytest_twisted

from mailstack.config.maincf import ConfigError
from tests.smtpd.conftest import PASSWORD
from tests.smtpd.harness import in_thread, raw_session, start_smtpd

# Loopback is *not* trusted here, so the matrix can be walked from 127.0.0.1.
UNTRUSTED = {"mynetworks": "192.0.2.0/24", "relay_domains": "relay.example",
             "virtual_alias_domains": "alias.example", "virtual_alias_maps": "inline:{{bob@alias.example=x@example.test}}",
             "auth_failure_delay": "0"}


def _rcpt(port, rcpt, auth=None, sender=b"a@example.org"):
    lines = [b"EHLO client.example.org"]
    if auth:
        lines.append(b"AUTH PLAIN " + base64.b64encode(auth.encode()))
    lines += [b"MAIL FROM:<" + sender + b">", b"RCPT TO:<" + rcpt.encode() + b">", b"QUIT"]
    out = raw_session(port, b"".join(line + b"\r\n" for line in lines), b"221 ").decode()
    return [line for line in out.split("\r\n") if line[:1] in "2345" and line[3:4] == " "][-2]


MATRIX = [
    # (case, overrides, recipient, authenticated, expected reply)
    ("trusted-network", {"mynetworks": "127.0.0.0/8"}, "friend@remote.example", False, "250 2.1.5 Ok"),
    ("authenticated", {"smtpd_sasl_auth_enable": "yes"}, "friend@remote.example", True, "250 2.1.5 Ok"),
    ("local-domain", {}, "postmaster@mail.example.test", False, "250 2.1.5 Ok"),
    ("virtual-mailbox-domain", {}, "joe@example.test", False, "250 2.1.5 Ok"),
    ("virtual-alias-domain", {}, "bob@alias.example", False, "250 2.1.5 Ok"),
    ("relay-domain", {}, "anyone@relay.example", False, "250 2.1.5 Ok"),
    ("relay-subdomain", {}, "anyone@sub.relay.example", False, "250 2.1.5 Ok"),
    ("neither", {}, "friend@remote.example", False,
     "554 5.7.1 <friend@remote.example>: Relay access denied"),
    ("percent-hack-relay", {}, "friend%remote.example@mail.example.test", False,
     "554 5.7.1 <friend%remote.example@mail.example.test>: Relay access denied"),
    ("bang-path-relay", {}, "remote.example!friend", False, "554 5.7.1 <remote.example!friend>: Relay access denied"),
    ("unknown-virtual-mailbox", {}, "nobody@example.test", False,
     "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table"),
    ("unknown-virtual-alias", {}, "nobody@alias.example", False,
     "550 5.1.1 <nobody@alias.example>: Recipient address rejected: User unknown in virtual alias table"),
    ("unknown-local", {"local_recipient_maps": "inline:{{postmaster=x}}"}, "nobody@mail.example.test", False,
     "550 5.1.1 <nobody@mail.example.test>: Recipient address rejected: User unknown in local recipient table"),
    ("unknown-relay-recipient", {"relay_recipient_maps": "inline:{{known@relay.example=x}}"}, "nobody@relay.example",
     False, "550 5.1.1 <nobody@relay.example>: Recipient address rejected: User unknown in relay recipient table"),
    ("relocated", {"relocated_maps": "inline:{{joe@example.test=joe@new.example}}"}, "joe@example.test", False,
     "550 5.1.6 <joe@example.test>: Recipient address rejected: User has moved to joe@new.example"),
    ("unlisted-check-off", {"smtpd_reject_unlisted_recipient": "no"}, "nobody@example.test", False, "250 2.1.5 Ok"),
    ("defer-unauth", {"smtpd_relay_restrictions": "permit_mynetworks, defer_unauth_destination"},
     "friend@remote.example", False, "450 4.7.1 <friend@remote.example>: Relay access denied"),
    ("lookup-failure", {"virtual_mailbox_maps": "fail:broken"}, "nobody@example.test", False,
     "451 4.3.0 <nobody@example.test>: Temporary lookup failure"),
]


@pytest.mark.parametrize("case,overrides,rcpt,auth,expected", MATRIX, ids=[m[0] for m in MATRIX])
@pytest_twisted.ensureDeferred
async def test_relay_decision_matrix(smtpd, case, overrides, rcpt, auth, expected):
    """Each kind of destination and client gets Postfix's answer at RCPT TO."""
    settings = {**UNTRUSTED, **overrides}
    settings = {k: v.replace("{{", "{").replace("}}", "}") for k, v in settings.items()}
    server = await smtpd(**settings)
    credentials = ("\x00joe@example.test\x00" + PASSWORD) if auth else None
    reply = await in_thread(_rcpt, server.port, rcpt, credentials)
    assert reply == expected


@pytest_twisted.ensureDeferred
async def test_relay_denied_log_line(smtpd):
    """A relay reject is logged exactly as Postfix logs it."""
    server = await smtpd(mynetworks="192.0.2.0/24")
    await in_thread(_rcpt, server.port, "friend@remote.example")
    assert server.logs.grep(
        "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <friend@remote.example>: Relay access denied; "
        "from=<a@example.org> to=<friend@remote.example> proto=ESMTP helo=<client.example.org>")


@pytest_twisted.ensureDeferred
async def test_restriction_classes_and_stages(smtpd):
    """A restriction class is evaluated by name; sender and client restrictions are delayed to RCPT."""
    server = await smtpd(smtpd_restriction_classes="strict", strict="reject",
                         smtpd_sender_restrictions="strict", mynetworks="192.0.2.0/24")
    reply = await in_thread(_rcpt, server.port, "joe@example.test")
    assert reply == "554 5.7.1 <a@example.org>: Sender address rejected: Access denied"


@pytest_twisted.ensureDeferred
async def test_client_restrictions_without_delay(smtpd):
    """With smtpd_delay_reject = no a client reject answers every command but QUIT."""
    server = await smtpd(smtpd_client_restrictions="permit_mynetworks, reject", smtpd_delay_reject="no",
                         mynetworks="192.0.2.0/24")
    out = (await in_thread(raw_session, server.port, b"HELO c\r\nQUIT\r\n", b"221 ")).decode()
    assert "554 5.7.1 unknown[127.0.0.1]: Client host rejected: Access denied" in out
    assert server.logs.grep("NOQUEUE: reject: CONNECT from unknown[127.0.0.1]: 554 5.7.1")


@pytest_twisted.ensureDeferred
async def test_data_and_end_of_data_restrictions(smtpd):
    """smtpd_data_restrictions refuse DATA; smtpd_end_of_data_restrictions refuse after the content."""
    server = await smtpd(smtpd_data_restrictions="defer")
    out = (await in_thread(raw_session, server.port,
                           b"HELO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nQUIT\r\n",
                           b"221 ")).decode()
    assert "450 4.7.1 <DATA>: Data command rejected: Try again later" in out
    server = await smtpd(smtpd_end_of_data_restrictions="reject")
    out = (await in_thread(raw_session, server.port,
                           b"HELO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nx\r\n.\r\n"
                           b"QUIT\r\n", b"221 ")).decode()
    assert "554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: Access denied" in out
    assert server.queued() == []


@pytest_twisted.ensureDeferred
async def test_unknown_restriction_stops_startup(smtp_config_dir):
    """An unknown restriction name is a configuration error naming the parameter."""
    with pytest.raises(ConfigError, match="smtpd_recipient_restrictions: unknown restriction 'permit_everyone'"):
        await start_smtpd(smtp_config_dir, smtpd_recipient_restrictions="permit_everyone")


@pytest_twisted.ensureDeferred
async def test_helo_restrictions_at_helo_without_delay(smtpd):
    """smtpd_helo_restrictions refuse HELO/EHLO itself when smtpd_delay_reject = no."""
    server = await smtpd(smtpd_helo_restrictions="permit_mynetworks, reject", smtpd_delay_reject="no",
                         mynetworks="192.0.2.0/24")
    out = (await in_thread(raw_session, server.port, b"EHLO bad.example\r\nQUIT\r\n", b"221 ")).decode()
    assert "554 5.7.1 <bad.example>: Helo command rejected: Access denied" in out
    assert server.logs.grep("NOQUEUE: reject: HELO from unknown[127.0.0.1]: 554 5.7.1 <bad.example>: "
                            "Helo command rejected: Access denied; proto=ESMTP helo=<bad.example>")


@pytest_twisted.ensureDeferred
async def test_reject_after_accepted_recipient_names_the_queue_id(smtpd):
    """Once a recipient is accepted the queue id replaces NOQUEUE in reject lines, as in Postfix."""
    from tests.smtpd.test_protocol import _until
    server = await smtpd(mynetworks="192.0.2.0/24")
    await in_thread(raw_session, server.port, b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\n"
                    b"RCPT TO:<far@remote.example>\r\nQUIT\r\n", b"221 ")
    await _until(lambda: server.logs.grep(": client=unknown[127.0.0.1]"))
    [client_line] = server.logs.grep(": client=unknown[127.0.0.1]")
    queue_id = client_line.split(":")[0]
    assert server.logs.grep("%s: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <far@remote.example>: "
                            "Relay access denied;" % queue_id)
