"""Several processes delivering into one folder while others read and re-flag it."""

import json
import os
import subprocess
import sys

from mailstack.store.store import MailStore
from tests.conftest import subprocess_env


def _spawn(role, root, count, out):
    return subprocess.Popen([sys.executable, "-m", "tests.store.concurrency_worker", role, root, str(count), out],
                            env=subprocess_env(), cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_no_message_or_uid_lost_or_duplicated(tmp_path):
    """4 store deliverers, 2 raw deliverers, a re-flagger and 2 readers never lose, duplicate or reuse a UID."""
    root = str(tmp_path / "Maildir")
    MailStore(fsync=False).mailbox("alice", location="maildir:" + root).ensure()
    roles = ["deliver"] * 4 + ["raw"] * 2
    readers = ["read", "read", "flag"]
    per = 60
    outs = {}
    procs = []
    for i, role in enumerate(readers + roles):
        outs[i] = str(tmp_path / ("%s%d.json" % (role, i)))
        procs.append(_spawn(role, root, per, outs[i]))
    for proc in procs[len(readers):]:
        assert proc.wait(timeout=60) == 0
    open(tmp_path / "stop", "w").close()
    for proc in procs[:len(readers)]:
        assert proc.wait(timeout=60) == 0

    inbox = MailStore(fsync=False).mailbox("alice", location="maildir:" + root).folder()
    inbox.sync()
    messages = inbox.messages()
    total = per * len(roles)
    assert len(messages) == total
    assert sorted(m.uid for m in messages) == list(range(1, total + 1))
    assert len({m.base for m in messages}) == total
    final = {str(m.uid): m.base for m in messages}
    for i in range(len(readers)):
        with open(outs[i]) as handle:
            report = json.load(handle)
        assert report["clashes"] == [] and report["expunged"] == []
        for uid, base in report["seen"].items():
            assert final[uid] == base
    with open(os.path.join(root, "dovecot-uidlist")) as handle:
        records = handle.read().splitlines()[1:]
    assert [int(line.split()[0]) for line in records] == list(range(1, total + 1))
