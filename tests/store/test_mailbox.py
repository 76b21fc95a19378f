"""Users' maildirs: mail locations, Maildir++ folders, subscriptions, UIDVALIDITY."""

import os

import pytest

from mailstack.store.errors import BadFolderName, FolderExists, FolderNotFound, StoreError
from mailstack.store.mailbox import expand_location
from mailstack.store.store import MailStore


@pytest.mark.parametrize("location,expected", [
    ("maildir:~/Maildir", "/home/alice/Maildir"),
    ("maildir:/var/mail/%d/%n/Maildir", "/var/mail/example.com/alice/Maildir"),
    ("maildir:/srv/%u:INDEX=/tmp/x", "/srv/alice@example.com"),
    ("maildir:%h/mail/", "/home/alice/mail"),
    ("/plain/path", "/plain/path"),
], ids=["home", "domain", "options", "h", "bare"])
def test_expand_location(location, expected):
    """Dovecot mail locations expand ~, %u, %n, %d, %h and drop :OPTIONS."""
    assert expand_location(location, "alice@example.com", "/home/alice") == expected


@pytest.mark.parametrize("location", ["mbox:~/mail", "maildir:~/Maildir", "maildir:/x/%z"])
def test_bad_locations(location):
    """Non-maildir locations, ~ without a home and unknown variables are errors."""
    with pytest.raises(StoreError):
        expand_location(location, "alice", "")


def test_created_on_first_use_with_default_folders(tmp_path):
    """The first delivery creates the maildir, the default folders and their subscriptions."""
    store = MailStore(hostname="mx")
    mb = store.mailbox("alice@example.com", location="maildir:%s/%%d/%%n/Maildir" % tmp_path)
    assert mb.root == str(tmp_path / "example.com" / "alice" / "Maildir")
    assert not os.path.exists(mb.root)
    mb.deliver(b"hello\n")
    assert mb.list_folders() == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    assert mb.subscriptions() == ["Drafts", "Sent", "Trash", "Junk", "Archive"]
    for name in ("Sent", "Trash"):
        assert os.path.exists(os.path.join(mb.root, "." + name, "maildirfolder"))


def test_folder_lifecycle(mailbox):
    """Create, rename (with children, keeping UIDs) and delete folders in modified UTF-7 on disk."""
    mailbox.create_folder("Entwürfe")
    mailbox.create_folder("Entwürfe.2024")
    assert os.path.isdir(os.path.join(mailbox.root, ".Entw&APw-rfe.2024", "cur"))
    msg = mailbox.deliver(b"x\n", folder="Entwürfe.2024")
    with pytest.raises(FolderExists):
        mailbox.create_folder("Entwürfe")
    mailbox.rename_folder("Entwürfe", "Alt")
    assert "Alt.2024" in mailbox.list_folders() and "Entwürfe" not in mailbox.list_folders()
    moved = mailbox.folder("Alt.2024")
    moved.sync()
    assert [m.uid for m in moved.messages()] == [msg.uid]
    mailbox.delete_folder("Alt.2024")
    assert "Alt.2024" not in mailbox.list_folders()
    with pytest.raises(FolderNotFound):
        mailbox.delete_folder("Alt.2024")
    with pytest.raises(BadFolderName):
        mailbox.delete_folder("INBOX")


def test_subscriptions_file_format(mailbox):
    """subscriptions is Dovecot 2.3's: V<TAB>2, empty line, TAB-separated modified UTF-7 names."""
    mailbox.subscribe("Entwürfe.Sub")
    mailbox.unsubscribe("Junk")
    with open(os.path.join(mailbox.root, "subscriptions"), encoding="utf-8") as handle:
        text = handle.read()
    assert text == "V\t2\n\nDrafts\nSent\nTrash\nArchive\nEntw&APw-rfe\tSub\n"
    assert mailbox.subscriptions()[-1] == "Entwürfe.Sub"


def test_uidvalidity_unique_per_folder(mailbox):
    """Each folder gets a distinct, increasing UIDVALIDITY recorded in dovecot-uidvalidity."""
    values = []
    for name in ("INBOX", "Sent", "Trash"):
        folder = mailbox.folder(name)
        folder.sync()
        values.append(folder.uidvalidity)
    assert values == sorted(values) and len(set(values)) == 3
    with open(os.path.join(mailbox.root, "dovecot-uidvalidity")) as handle:
        assert int(handle.read(), 16) == values[-1]
    assert os.path.exists(os.path.join(mailbox.root, "dovecot-uidvalidity.%08x" % values[-1]))


def test_deliver_to_missing_folder_creates_it(mailbox):
    """Delivery into a folder that does not exist yet (a sieve-like fileinto) creates it."""
    msg = mailbox.deliver(b"x\n", folder="Lists.python")
    assert "Lists.python" in mailbox.list_folders()
    folder = mailbox.folder("Lists.python")
    folder.sync()
    assert folder.get(msg.uid) is not None
