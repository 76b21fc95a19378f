"""Folders: persistent UIDs, flags and keywords in file names, expunge, \\Recent, copy."""

import os

import pytest

from mailstack.store.errors import QuotaExceeded
from mailstack.store.keywords import KeywordLimitError
from mailstack.store.store import MailStore


def _reopen(mailbox, tmp_path):
    """The same maildir seen by a fresh store, as after a restart."""
    return MailStore(hostname="other").mailbox("alice@example.test", str(tmp_path / "home")).folder()


def test_uids_persist_across_restart(mailbox, tmp_path):
    """A second store (a restart) sees the same UIDVALIDITY and UIDs."""
    for i in range(3):
        mailbox.deliver(b"Subject: %d\n\nx\n" % i)
    inbox = mailbox.folder()
    inbox.sync()
    before = [(m.uid, m.base) for m in inbox.messages()]
    again = _reopen(mailbox, tmp_path)
    again.sync()
    assert [(m.uid, m.base) for m in again.messages()] == before == [(1, before[0][1]), (2, before[1][1]),
                                                                    (3, before[2][1])]
    assert again.uidvalidity == inbox.uidvalidity and again.uidnext == 4


def test_external_rename_keeps_uid(mailbox):
    """A message moved new/ -> cur/ and re-flagged by another program (mutt) keeps its UID."""
    first = mailbox.deliver(b"a\n")
    second = mailbox.deliver(b"b\n")
    inbox = mailbox.folder()
    inbox.sync()
    os.rename(os.path.join(inbox.path, "new", second.name),
              os.path.join(inbox.path, "cur", second.name + ":2,RS"))
    changes = inbox.sync()
    assert changes.flagged[0].uid == second.uid and changes.flagged[0].flags == {"\\Answered", "\\Seen"}
    assert [m.uid for m in inbox.messages()] == [first.uid, second.uid]
    assert not changes.added and not changes.expunged


def test_move_to_cur_without_flag_change_is_published(mailbox):
    """A message moved new/ -> cur/ with no flags (as Dovecot's pop3 does) is opened at its new path."""
    msg = mailbox.deliver(b"moved\n")
    inbox = mailbox.folder()
    inbox.sync()
    os.rename(os.path.join(inbox.path, "new", msg.name), os.path.join(inbox.path, "cur", msg.name + ":2,"))
    changes = inbox.sync()
    assert not changes.added and not changes.expunged and not changes.flagged
    assert inbox.get(msg.uid).subdir == "cur"
    with inbox.open_message(msg.uid) as handle:
        assert handle.read() == b"moved\n"


def test_store_flags_and_keywords(mailbox):
    """STORE-style changes rename into cur/ with sorted letters and dovecot-keywords letters."""
    msg = mailbox.deliver(b"a\n")
    inbox = mailbox.folder()
    inbox.sync()
    changed = inbox.store_flags([msg.uid], {"\\Seen", "$Forwarded", "\\Recent"}, "set")
    assert changed[0].flags == {"\\Seen", "$Forwarded"}
    inbox.store_flags([msg.uid], {"\\Flagged", "Junk"}, "add")
    inbox.store_flags([msg.uid], {"\\Seen"}, "remove")
    now = inbox.get(msg.uid)
    assert now.name == msg.base + ":2,Fab" and now.subdir == "cur"
    assert now.flags == {"\\Flagged", "$Forwarded", "Junk"}
    with open(os.path.join(inbox.path, "dovecot-keywords")) as handle:
        assert handle.read() == "0 $Forwarded\n1 Junk\n"
    assert inbox.store_flags([msg.uid], {"\\flagged"}, "add") == []  # case-insensitive, already set
    assert inbox.sync().flagged == ()


def test_keyword_limit(mailbox):
    """A 27th keyword in a folder is refused, as in Dovecot."""
    msg = mailbox.deliver(b"a\n")
    inbox = mailbox.folder()
    inbox.sync()
    inbox.store_flags([msg.uid], {"k%d" % i for i in range(26)}, "add")
    with pytest.raises(KeywordLimitError):
        inbox.store_flags([msg.uid], {"one-too-many"}, "add")
    assert len(inbox.get(msg.uid).flags) == 26


def test_expunge_and_external_delete(mailbox, tmp_path):
    """Expunge removes file and uidlist record; a file deleted by another program is expunged on sync."""
    msgs = [mailbox.deliver(b"m%d\n" % i) for i in range(3)]
    inbox = mailbox.folder()
    inbox.sync()
    assert inbox.expunge([msgs[0].uid, 99]) == [msgs[0].uid]
    os.unlink(os.path.join(inbox.path, "new", msgs[1].name))
    assert inbox.sync().expunged == (msgs[1].uid,)
    assert [m.uid for m in inbox.messages()] == [msgs[2].uid]
    with open(os.path.join(inbox.path, "dovecot-uidlist")) as handle:
        lines = handle.read().splitlines()
    assert lines[0].split()[2] == "N4" and lines[1:] == ["3 :" + msgs[2].base]
    fresh = _reopen(mailbox, tmp_path)
    fresh.sync()
    assert [m.uid for m in fresh.messages()] == [3] and fresh.uidnext == 4


def test_recent_is_seen_by_one_session(mailbox, tmp_path):
    """\\Recent: the first session to claim gets the new UIDs, the next one gets none."""
    mailbox.deliver(b"a\n")
    mailbox.deliver(b"b\n")
    inbox = mailbox.folder()
    inbox.sync()
    assert inbox.claim_recent() == {1, 2}
    other = _reopen(mailbox, tmp_path)
    other.sync()
    assert other.claim_recent() == set()
    mailbox.deliver(b"c\n")
    other.sync()
    assert other.claim_recent() == {3}
    assert inbox.claim_recent() == set()


def test_append_returns_uid_and_read(mailbox):
    """APPEND gives the UID at once; the message reads back with LF line ends and its date."""
    inbox = mailbox.folder()
    inbox.sync()
    msg = inbox.append(b"Subject: hi\r\n\r\nbody\r\n", {"\\Seen"}, internaldate=1000000000)
    assert msg.uid == 1 and msg.flags == {"\\Seen"} and msg.vsize == 21 and msg.size == 18
    assert inbox.read(1) == b"Subject: hi\n\nbody\n"
    assert inbox.internaldate(1) == 1000000000
    assert [m.uid for m in inbox.messages()] == [1]


def test_read_follows_external_rename(mailbox):
    """Reading a message renamed by someone else since the last sync still works."""
    msg = mailbox.deliver(b"x\n")
    inbox = mailbox.folder()
    inbox.sync()
    os.rename(os.path.join(inbox.path, "new", msg.name), os.path.join(inbox.path, "cur", msg.name + ":2,S"))
    assert inbox.read(msg.uid) == b"x\n"
    assert inbox.get(msg.uid).flags == {"\\Seen"}


def test_copy_to_keeps_flags(mailbox):
    """COPY puts the message into the target with its flags and a new UID there."""
    msg = mailbox.deliver(b"x\n", flags={"\\Seen", "Work"})
    inbox, sent = mailbox.folder(), mailbox.folder("Sent")
    inbox.sync()
    sent.sync()
    pairs = inbox.copy_to([msg.uid], sent)
    assert [(uid, new.uid, new.flags) for uid, new in pairs] == [(msg.uid, 1, {"\\Seen", "Work"})]
    assert sent.read(1) == b"x\n"


def test_messages_without_size_fields(mailbox, tmp_path):
    """Files named by other software without S=/W= are measured once; the sizes go into the uidlist."""
    inbox = mailbox.folder()
    with open(os.path.join(inbox.path, "cur", "1000.123_4.other:2,S"), "wb") as handle:
        handle.write(b"12345\nx\n")
    inbox.sync()
    message = inbox.messages()[0]
    assert (message.size, message.vsize, message.flags, message.base) == (8, 10, {"\\Seen"}, "1000.123_4.other")
    with open(os.path.join(inbox.path, "dovecot-uidlist")) as handle:
        assert handle.read().splitlines()[1] == "1 S8 W10 :1000.123_4.other"
    # A fresh process takes them from the uidlist without reading the file.
    with open(os.path.join(inbox.path, "cur", "1000.123_4.other:2,S"), "wb") as handle:
        handle.write(b"changed behind our back, so a re-read would show\n")
    again = _reopen(mailbox, tmp_path)
    again.sync()
    assert (again.get(1).size, again.get(1).vsize) == (8, 10)


def test_status_counts(mailbox):
    """status() gives messages, unseen, sizes, UIDNEXT and UIDVALIDITY of the last sync."""
    mailbox.deliver(b"a\r\nb\r\n", flags={"\\Seen"})
    mailbox.deliver(b"abc\n")
    inbox = mailbox.folder()
    inbox.sync()
    status = inbox.status()
    assert status == (2, 1, 4 + 4, 6 + 5, 3, inbox.uidvalidity)


def test_recreated_uidlist_changes_uidvalidity(mailbox):
    """When the uidlist is deleted, messages are renumbered under a new UIDVALIDITY."""
    mailbox.deliver(b"a\n")
    inbox = mailbox.folder()
    inbox.sync()
    before = inbox.uidvalidity
    os.unlink(os.path.join(inbox.path, "dovecot-uidlist"))
    inbox.sync()
    assert inbox.uidvalidity > before and [m.uid for m in inbox.messages()] == [1]


def test_stale_tmp_files_are_cleaned_on_sync(mailbox):
    """A sync removes tmp/ leftovers of crashed deliveries older than 36 hours."""
    inbox = mailbox.folder()
    leftover = os.path.join(inbox.path, "tmp", "1.M1P1.crashed")
    open(leftover, "w").close()
    os.utime(leftover, (1, 1))
    inbox.sync()
    assert not os.path.exists(leftover)


def test_copy_hard_links_and_counts_quota(tmp_path):
    """COPY hard-links the file (same inode and date), keeps keywords per target folder, and counts quota."""
    store = MailStore(hostname="mx")
    mb = store.mailbox("bob", str(tmp_path), quota_rule="*:messages=3").ensure()
    msg = mb.deliver(b"hello\n", flags={"\\Seen", "$Label"}, internaldate=1000000000)
    inbox, archive = mb.folder(), mb.folder("Archive")
    inbox.sync()
    archive.sync()
    archive.store_flags([], {"Other"}, "add")  # gives "Other" letter a in Archive
    (uid, copy), = inbox.copy_to([msg.uid], archive)
    assert uid == msg.uid and copy.uid == 1 and copy.flags == {"\\Seen", "$Label"}
    assert os.stat(os.path.join(archive.path, copy.subdir, copy.name)).st_ino == \
        os.stat(os.path.join(inbox.path, "cur", msg.name)).st_ino
    assert archive.internaldate(1) == 1000000000 and archive.read(1) == b"hello\n"
    assert mb.quota.usage()[:2] == (12, 2)
    inbox.copy_to([msg.uid], archive)
    with pytest.raises(QuotaExceeded):
        inbox.copy_to([msg.uid], archive)
    assert len(os.listdir(os.path.join(archive.path, "tmp"))) == 0


def test_peek_recent_counts_without_claiming(mailbox):
    """peek_recent counts unclaimed messages and leaves them for the next claim."""
    mailbox.deliver(b"a\n")
    mailbox.deliver(b"b\n")
    inbox = mailbox.folder()
    assert inbox.peek_recent() == 2
    assert inbox.peek_recent() == 2
    assert inbox.claim_recent() == {1, 2}
    assert inbox.peek_recent() == 0


def test_arrivals_are_claimed_for_one_read_write_listener(mailbox):
    """New arrivals are claimed for the first listener with claims_recent, and for no other."""

    class Session:
        def __init__(self, claims):
            self.claims_recent = claims
            self.recent = set()
            self.added = []

        def recent_claimed(self, folder, uids):
            self.recent.update(uids)

        def messages_added(self, folder, messages):
            self.added.extend(m.uid for m in messages)

    inbox = mailbox.folder()
    inbox.sync()
    reader, first, second = Session(False), Session(True), Session(True)
    for listener in (reader, first, second):
        inbox.add_listener(listener)
    mailbox.deliver(b"a\n")
    inbox.sync()
    assert first.recent == {1} and second.recent == set() and reader.recent == set()
    assert reader.added == first.added == second.added == [1]
    assert inbox.peek_recent() == 0 and inbox.claim_recent() == set()
