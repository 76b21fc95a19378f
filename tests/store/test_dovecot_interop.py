"""A real Dovecot (Debian dovecot-imapd) and mailstack on one maildir, both directions.

Dovecot's imap binary runs pre-authenticated over stdin/stdout (no daemon)
with a minimal dovecot.conf.  Dovecot refuses to access mail as root, so the
maildir lives in a world-traversable temporary directory and is handed to
``nobody`` before each Dovecot run when the tests run as root.
"""

import os
import pwd
import re
import shutil
import subprocess
import tempfile

import pytest

from mailstack.store.store import MailStore

IMAP = "/usr/lib/dovecot/imap"

pytestmark = pytest.mark.skipif(not os.access(IMAP, os.X_OK), reason="Dovecot's imap binary is not installed")

_FETCH = re.compile(r"^\* \d+ FETCH \((.*)\)$")


@pytest.fixture
def site():
    """A world-traversable directory with a dovecot.conf for maildir ./Maildir."""
    base = tempfile.mkdtemp(prefix="mailstack-dovecot-", dir="/tmp")
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
    else:
        user = pwd.getpwuid(os.geteuid())
    group = user.pw_gid
    maildir = os.path.join(base, "Maildir")
    with open(os.path.join(base, "dovecot.conf"), "w") as handle:
        handle.write("\n".join([
            "mail_location = maildir:%s" % maildir,
            "mail_uid = %d" % user.pw_uid,
            "mail_gid = %d" % group,
            "first_valid_uid = %d" % min(user.pw_uid, 1),
            "first_valid_gid = %d" % min(group, 1),
            "log_path = /dev/stderr",
            "ssl = no",
            "protocols = imap",
            "base_dir = %s/run" % base,
            "state_dir = %s/state" % base,
            "namespace inbox {", "  inbox = yes", "  separator = .", "}", ""]))
    yield {"base": base, "maildir": maildir, "uid": user.pw_uid, "gid": group}
    shutil.rmtree(base, ignore_errors=True)


def dovecot(site, *commands):
    """Run Dovecot's imap with ``commands`` (tagged lines); return its output lines."""
    if os.geteuid() == 0:
        for directory, dirs, files in os.walk(site["maildir"]):
            os.chown(directory, site["uid"], site["gid"])
            for name in files:
                os.chown(os.path.join(directory, name), site["uid"], site["gid"])
    script = "".join(c + "\r\n" for c in commands) + "zz LOGOUT\r\n"
    env = {"USER": "alice", "HOME": site["base"], "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([IMAP, "-c", os.path.join(site["base"], "dovecot.conf")], input=script.encode(),
                          capture_output=True, env=env, timeout=20)
    out = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n").splitlines()
    errors = [line for line in proc.stderr.decode().splitlines() if "Error" in line or "Fatal" in line]
    assert not errors, errors
    for line in out:
        assert " NO " not in line and " BAD " not in line, out
    return out


def append(folder, text, flags=""):
    """An APPEND command with a LITERAL+ literal."""
    data = text.replace("\n", "\r\n")
    return 'a APPEND "%s" (%s) {%d+}\r\n%s' % (folder, flags, len(data.encode()), data)


def fetched(lines):
    """uid -> flags (without \\Recent) from UID FETCH (UID FLAGS) responses."""
    result = {}
    for line in lines:
        match = _FETCH.match(line)
        if match:
            uid = int(re.search(r"UID (\d+)", match.group(1)).group(1))
            flags = re.search(r"FLAGS \(([^)]*)\)", match.group(1)).group(1).split()
            result[uid] = frozenset(f for f in flags if f != "\\Recent")
    return result


def status(lines, folder):
    """(UIDVALIDITY, UIDNEXT) from a STATUS response for ``folder``."""
    for line in lines:
        if line.startswith("* STATUS ") and folder in line:
            return (int(re.search(r"UIDVALIDITY (\d+)", line).group(1)),
                    int(re.search(r"UIDNEXT (\d+)", line).group(1)))
    raise AssertionError("no STATUS for %s in %r" % (folder, lines))


def _store(site):
    return MailStore(hostname="mx.example.test").mailbox("alice", location="maildir:" + site["maildir"])


def test_dovecot_reads_mailstack_maildir(site):
    """Dovecot sees mailstack's UIDVALIDITY, UIDs, flags, keywords, folders and subscriptions."""
    mb = _store(site)
    m1 = mb.deliver(b"Subject: one\n\nx\n", flags={"\\Seen", "$Forwarded"})
    m2 = mb.deliver(b"Subject: two\n\nx\n")
    m3 = mb.deliver(b"Subject: three\n\nx\n")
    inbox = mb.folder()
    inbox.sync()
    inbox.store_flags([m2.uid], {"\\Flagged", "\\Answered", "Junk"}, "set")
    inbox.expunge([m3.uid])
    mb.deliver(b"Subject: four\n\nx\n")
    mb.create_folder("Entwürfe")
    draft = mb.deliver(b"Subject: draft\n\nx\n", folder="Entwürfe", flags={"\\Draft"})
    mb.subscribe("Entwürfe")
    inbox.sync()
    drafts = mb.folder("Entwürfe")
    drafts.sync()

    out = dovecot(site, 'a STATUS INBOX (UIDVALIDITY UIDNEXT)', 'b STATUS "Entw&APw-rfe" (UIDVALIDITY UIDNEXT)',
                  'c LSUB "" "*"', "d SELECT INBOX", "e UID FETCH 1:* (UID FLAGS)",
                  'f SELECT "Entw&APw-rfe"', "g UID FETCH 1:* (UID FLAGS)")
    assert status(out, "INBOX") == (inbox.uidvalidity, inbox.uidnext) == (inbox.uidvalidity, 5)
    assert status(out, "Entw&APw-rfe") == (drafts.uidvalidity, 2)
    assert any(line.endswith('"." Entw&APw-rfe') for line in out if line.startswith("* LSUB"))
    select = out.index(next(line for line in out if line.startswith("e OK")))
    inbox_flags = fetched(out[:select])
    assert inbox_flags == {m.uid: m.flags for m in inbox.messages()}
    assert inbox_flags == {m1.uid: {"\\Seen", "$Forwarded"}, m2.uid: {"\\Flagged", "\\Answered", "Junk"},
                           4: frozenset()}
    assert fetched(out[select + 1:]) == {draft.uid: {"\\Draft"}}


def test_mailstack_reads_dovecot_maildir(site):
    """mailstack sees Dovecot's UIDVALIDITY, UIDs, flags, keywords and subscriptions, and continues its UIDs."""
    os.makedirs(site["maildir"])
    out = dovecot(site, "s SELECT INBOX",
                  append("INBOX", "Subject: a\n\nx\n", "\\Seen $Label1"),
                  append("INBOX", "Subject: b\n\nx\n"),
                  append("INBOX", "Subject: c\n\nx\n", "\\Draft"),
                  append("INBOX", "Subject: d\n\nx\n", "NonJunk"),
                  "n NOOP",
                  "t UID STORE 2 +FLAGS (\\Flagged Work)", "u UID STORE 3 +FLAGS (\\Deleted)", "v EXPUNGE",
                  'c CREATE "Archive.2024"', 'd SUBSCRIBE "Archive.2024"',
                  append("Archive.2024", "Subject: old\n\nx\n", "\\Seen"), "x UNSELECT")
    out = dovecot(site, "w STATUS Archive.2024 (UIDVALIDITY UIDNEXT)", "y STATUS INBOX (UIDVALIDITY UIDNEXT)")
    mb = _store(site)
    inbox = mb.folder()
    inbox.sync()
    assert (inbox.uidvalidity, inbox.uidnext) == status(out, "INBOX") == (inbox.uidvalidity, 5)
    assert {m.uid: m.flags for m in inbox.messages()} == {
        1: {"\\Seen", "$Label1"}, 2: {"\\Flagged", "Work"}, 4: {"NonJunk"}}
    assert inbox.read(1) == b"Subject: a\n\nx\n"
    archive = mb.folder("Archive.2024")
    archive.sync()
    assert (archive.uidvalidity, archive.uidnext) == status(out, "Archive.2024")
    assert "Archive.2024" in mb.list_folders() and "Archive.2024" in mb.subscriptions()

    # mailstack continues where Dovecot stopped (UIDs, flags, expunges), and Dovecot agrees.
    new = mb.deliver(b"Subject: e\n\nx\n", flags={"Work"})
    inbox.store_flags([1], {"\\Answered", "Later"}, "add")
    inbox.expunge([4])
    inbox.sync()
    assert new.uid == 5 and [m.uid for m in inbox.messages()] == [1, 2, 5]
    out = dovecot(site, "a SELECT INBOX", "b UID FETCH 1:* (UID FLAGS)")
    assert fetched(out) == {m.uid: m.flags for m in inbox.messages()}


def test_concurrent_uid_assignment_with_dovecot(site):
    """Dovecot APPENDing while mailstack delivers: the dot-lock keeps every UID unique, both agree."""
    os.makedirs(site["maildir"])
    dovecot(site, "a SELECT INBOX")  # Dovecot creates its uidlist and index, owned by its user
    count = 60
    script = "".join(append("INBOX", "Subject: dovecot %d\n\nx\n" % i) + "\r\n" for i in range(count))
    env = {"USER": "alice", "HOME": site["base"], "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([IMAP, "-c", os.path.join(site["base"], "dovecot.conf")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdin.write((script + "zz LOGOUT\r\n").encode())
    proc.stdin.flush()
    mb = _store(site)
    inbox = mb.folder()
    for i in range(count):
        mb.deliver(b"Subject: mailstack %d\n\nx\n" % i)
        if i % 10 == 0:
            inbox.sync()
    out, err = proc.communicate(timeout=60)
    assert out.count(b"a OK [APPENDUID") == count, out[-500:]
    inbox.sync()
    uids = [m.uid for m in inbox.messages()]
    assert uids == list(range(1, 2 * count + 1))
    subjects = {inbox.read(uid).split(b"\n")[0] for uid in uids}
    assert len(subjects) == 2 * count
    listed = dovecot(site, "a SELECT INBOX", "b UID FETCH 1:* (UID FLAGS)")
    assert sorted(fetched(listed)) == uids
