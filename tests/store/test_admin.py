"""``mailstack mailbox``: list, status and resync of a user's maildir through the userdb."""

import os

from mailstack.config import maincf
from mailstack.store import maildir
from mailstack.store.store import MailStore
from tests.conftest import run_cli


def _add_user(config_dir, tmp_path, *extra):
    home = tmp_path / "home" / "alice"
    status, out, err = run_cli("--config", config_dir, "user", "add", "alice@example.test", "--password", "secret",
                               "--home", home, *extra)
    assert status == 0, err
    return home


def test_status_and_list_through_userdb(config_dir, tmp_path):
    """status numbers the user's messages and prints counts per folder; list marks subscriptions."""
    home = _add_user(config_dir, tmp_path, "--quota", "1M")
    mb = MailStore(config=maincf.load(str(config_dir))).mailbox("alice@example.test", str(home))
    mb.deliver(b"one\n", flags={"\\Seen"})
    maildir.deliver(mb.root, b"dropped in by procmail\n")
    status, out, err = run_cli("--config", config_dir, "mailbox", "status", "alice@example.test", "INBOX", "Sent")
    assert status == 0, err
    lines = out.splitlines()
    uidvalidity = int(lines[0].split("uidvalidity=")[1].split()[0])
    assert lines[0] == "INBOX messages=2 unseen=1 vsize=29 uidvalidity=%d uidnext=3" % uidvalidity
    assert lines[1].startswith("Sent messages=0 unseen=0 vsize=0 ")
    # maildirsize did not exist (no quota when alice's first mail came): counted from scratch.
    assert lines[2] == "quota: bytes=27 messages=2 limit_bytes=1048576 limit_messages=none"
    status, out, err = run_cli("--config", config_dir, "mailbox", "list", "alice@example.test")
    assert out.splitlines() == ["INBOX", "Archive *", "Drafts *", "Junk *", "Sent *", "Trash *"]


def test_resync_recalculates_quota(config_dir, tmp_path):
    """resync numbers outside deliveries and recounts maildirsize."""
    home = _add_user(config_dir, tmp_path, "--quota", "1M")
    mb = MailStore(config=maincf.load(str(config_dir))).mailbox("alice@example.test", str(home)).ensure()
    maildir.deliver(mb.root, b"12345\n")
    status, out, err = run_cli("--config", config_dir, "mailbox", "resync", "alice@example.test")
    assert status == 0, err
    assert "INBOX added=1 expunged=0 flagged=0" in out.splitlines()
    assert out.splitlines()[-1] == "quota: bytes=6 messages=1 limit_bytes=1048576 limit_messages=none"


def test_unknown_user_and_direct_location(config_dir, tmp_path):
    """An unknown user exits 67; -l names a maildir directly."""
    status, out, err = run_cli("--config", config_dir, "mailbox", "status", "nobody@example.test")
    assert status == 67 and "doesn't exist" in err
    path = tmp_path / "direct" / "Maildir"
    status, out, err = run_cli("--config", config_dir, "mailbox", "status", "-l", "maildir:%s" % path, "x", "INBOX")
    assert status == 0 and out.startswith("INBOX messages=0 ")
    assert os.path.isdir(path / "cur")
