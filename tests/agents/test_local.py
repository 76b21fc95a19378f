"""Local delivery: maildir through the store, aliases, :include:, commands, files, .forward, loops."""

import os

import pytest_twisted

from tests.agents.conftest import fake_account


async def _run(h, sender, recipients, body=b"Subject: hi\n\nhello\n"):
    h.qmgr.start()
    queue_id = await h.submit(sender, recipients, body)
    await h.settle()
    await h.qmgr.stop()
    return queue_id


@pytest_twisted.ensureDeferred
async def test_userdb_user_gets_maildir_with_headers(delivery, logs):
    """A local user from the userdb gets the message with Return-Path and Delivered-To on top."""
    h = delivery()
    queue_id = await _run(h, "sender@remote.test", ["alice@mail.example.test"])
    [message] = h.maildir("alice")
    assert message.startswith(b"Return-Path: <sender@remote.test>\nDelivered-To: alice@mail.example.test\n"
                              b"Subject: hi\n")
    line = logs.matching("%s: to=<alice@mail.example.test>" % queue_id)[0]
    assert "mailstack/local[1]" in line and "relay=local" in line
    assert line.endswith("dsn=2.0.0, status=sent (delivered to maildir)")


@pytest_twisted.ensureDeferred
async def test_recipient_delimiter_extension_reaches_user(delivery):
    """user+tag is delivered to user's mailbox when recipient_delimiter is set."""
    h = delivery(extra="recipient_delimiter = +\n")
    await _run(h, "s@remote.test", ["alice+news@localhost"])
    assert len(h.maildir("alice")) == 1


@pytest_twisted.ensureDeferred
async def test_unknown_user_bounces(delivery, logs):
    """An unknown local user bounces with 5.1.1 and the sender gets a DSN."""
    h = delivery()
    queue_id = await _run(h, "sender@remote.test", ["nobody@localhost"])
    assert logs.matching('dsn=5.1.1, status=bounced (unknown user: "nobody")')
    assert logs.matching("%s: sender non-delivery notification:" % queue_id)


@pytest_twisted.ensureDeferred
async def test_luser_relay_takes_unknown_users(delivery, logs):
    """luser_relay receives mail for unknown local users."""
    h = delivery(extra="luser_relay = alice+$user\nrecipient_delimiter = +\n")
    await _run(h, "s@remote.test", ["stranger@localhost"])
    assert len(h.maildir("alice")) == 1


@pytest_twisted.ensureDeferred
async def test_nested_aliases_include_file_command_and_forward(delivery, logs, tmp_path):
    """Aliases expand recursively to users, :include: lists, files, commands and remote addresses."""
    (tmp_path / "team.list").write_text("# the team\nbob, far@remote.test\n")
    out = tmp_path / "command.out"
    h = delivery(aliases="staff: alice, team\n"
                         "team: :include:%s\n"
                         "archive: /%s/archive.mbox\n"
                         "pipe: \"|cat > %s\"\n"
                         "all: staff, archive, pipe\n" % (tmp_path / "team.list", str(tmp_path).lstrip("/"), out))
    queue_id = await _run(h, "s@remote.test", ["all@localhost"])
    assert len(h.maildir("alice")) == 1 and len(h.maildir("bob")) == 1
    assert (tmp_path / "archive.mbox").read_bytes().startswith(b"From s@remote.test ")
    assert b"Delivered-To: pipe@mail.example.test" in out.read_bytes()
    line = logs.matching("%s: to=<all@localhost>" % queue_id)[0]
    assert "status=sent (delivered to maildir, delivered to file: " in line
    assert "delivered to command: cat > " in line and "forwarded as " in line
    forwarded = line.rsplit("forwarded as ", 1)[1].rstrip(")")
    assert logs.matching("%s: to=<far@remote.test>, orig_to=<all@localhost>" % forwarded)


@pytest_twisted.ensureDeferred
async def test_commands_and_files_respect_allow_lists(delivery, logs, tmp_path):
    """With allow_mail_to_commands/files empty, such alias destinations bounce as restricted."""
    h = delivery(aliases="pipe: |true\nfile: %s/x\n" % tmp_path,
                 extra="allow_mail_to_commands =\nallow_mail_to_files =\n")
    await _run(h, "s@remote.test", ["pipe@localhost", "file@localhost"])
    assert logs.matching("dsn=5.7.1, status=bounced (mail to command is restricted)")
    assert logs.matching("dsn=5.7.1, status=bounced (mail to file is restricted)")
    assert not os.path.exists(tmp_path / "x")


@pytest_twisted.ensureDeferred
async def test_failing_command_defers_or_bounces_by_exit_status(delivery, logs):
    """A command exiting 75 defers the recipient; exit 1 bounces it."""
    h = delivery(aliases="soft: \"|exit 75\"\nhard: \"|echo broken; exit 1\"\n")
    await _run(h, "s@remote.test", ["soft@localhost", "hard@localhost"])
    assert logs.matching("to=<soft@localhost>")[0].endswith("status=deferred (temporary failure. Command output:)")
    assert "status=bounced (Command died with status 1" in logs.matching("to=<hard@localhost>")[0]


@pytest_twisted.ensureDeferred
async def test_self_alias_delivers_to_mailbox(delivery):
    """An alias that lists its own name delivers to that user's mailbox as well."""
    h = delivery(aliases="alice: alice, bob\n")
    await _run(h, "s@remote.test", ["alice@localhost"])
    assert len(h.maildir("alice")) == 1 and len(h.maildir("bob")) == 1


@pytest_twisted.ensureDeferred
async def test_delivered_to_loop_bounces(delivery, logs):
    """A message that already carries Delivered-To for the recipient bounces as a loop."""
    h = delivery()
    await _run(h, "s@remote.test", ["alice@localhost"],
               b"Delivered-To: alice@localhost\nSubject: loop\n\nx\n")
    assert logs.matching("dsn=5.4.6, status=bounced (mail forwarding loop for alice@localhost)")
    assert h.maildir("alice") == []


@pytest_twisted.ensureDeferred
async def test_dot_forward_of_system_account(delivery, logs, tmp_path):
    """A system account's ~/.forward is expanded; \\user keeps a copy in its own mailbox."""
    account = fake_account(tmp_path, "dave")
    (tmp_path / "home" / "dave" / ".forward").write_text("alice, \\dave\n")
    h = delivery(accounts=lambda name: account if name == "dave" else (_ for _ in ()).throw(KeyError(name)))
    await _run(h, "s@remote.test", ["dave@localhost"])
    assert len(h.maildir("alice")) == 1
    assert len(os.listdir(tmp_path / "home" / "dave" / "Maildir" / "new")) == 1


@pytest_twisted.ensureDeferred
async def test_mailbox_size_limit_and_quota(delivery, logs):
    """mailbox_size_limit bounces big messages; a full quota bounces (5.2.2) or defers with quota_full_tempfail."""
    h = delivery(extra="mailbox_size_limit = 200\n")
    await _run(h, "s@remote.test", ["alice@localhost"], b"Subject: big\n\n" + b"x" * 300 + b"\n")
    assert logs.matching("dsn=5.2.2, status=bounced (cannot update mailbox")
    h2 = delivery(extra="quota_full_tempfail = yes\n")
    await _run(h2, "s@remote.test", ["bob@localhost"], b"Subject: big\n\n" + b"y" * 2000 + b"\n")
    assert logs.matching("to=<bob@localhost>")[-1].split("dsn=")[1].startswith("4.2.2, status=deferred")


@pytest_twisted.ensureDeferred
async def test_file_system_error_defers_and_notifies_postmaster(delivery, logs, tmp_path):
    """A maildir that cannot be written defers the mail and sends a 'resource' notice to the postmaster."""
    h = delivery(aliases="broken: %s/blocked/Maildir/\n" % tmp_path)
    (tmp_path / "blocked").write_text("a file where a directory should be")
    queue_id = await _run(h, "s@remote.test", ["broken@localhost"])
    assert logs.matching("to=<broken@localhost>")[0].split("dsn=")[1].startswith("4.3.0, status=deferred")
    assert logs.matching("%s: postmaster resource notification:" % queue_id)


@pytest_twisted.ensureDeferred
async def test_bounce_class_sends_postmaster_a_headers_only_copy(delivery, logs):
    """With notify_classes = bounce the postmaster gets a copy of each bounce without the message body."""
    h = delivery(aliases="postmaster: alice\n", extra="notify_classes = bounce\n")
    queue_id = await _run(h, "sender@remote.test", ["nobody@localhost"], b"Subject: secret\n\nthe body\n")
    assert logs.matching("%s: sender non-delivery notification:" % queue_id)
    assert logs.matching("%s: postmaster non-delivery notification:" % queue_id)
    h.qmgr.start()
    await h.settle()
    await h.qmgr.stop()
    [copy] = h.maildir("alice")
    assert b"Subject: Postmaster Copy: Undelivered Mail Returned to Sender" in copy
    assert b"Subject: secret" in copy and b"the body" not in copy
