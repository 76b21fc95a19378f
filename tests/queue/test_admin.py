"""The queue tools: mailq/postqueue, postsuper, postcat on a real queue directory."""

import os
import time

import pytest

from mailstack.config import maincf
from mailstack.queue import qfile
from mailstack.queue.envelope import Envelope, Recipient
from mailstack.queue.qmgr import write_defer_log
from mailstack.queue.store import MailQueue
from mailstack.common.queue_id import new_queue_id
from tests.conftest import run_cli


@pytest.fixture
def queue(config_dir):
    """The MailQueue of the init'ed configuration."""
    config = maincf.load(str(config_dir))
    return MailQueue(config["queue_directory"], reactor=None)


def _put(queue, where, sender="alice@example.org", rcpts=("bob@remote.test",), body=b"Subject: x\n\nhi\n"):
    queue_id = new_queue_id()
    env = Envelope(sender, [Recipient(r) for r in rcpts], arrival_time=time.time(), ret="HDRS")
    qfile.write_file(queue.path(where, queue_id), body, env)
    return queue_id


def test_mailq_on_empty_queue(config_dir):
    """mailq says 'Mail queue is empty' when nothing is queued."""
    assert run_cli("--config", config_dir, "mailq") == (0, "Mail queue is empty\n", "")


def test_mailq_lists_messages_with_marks_and_reasons(config_dir, queue):
    """postqueue -p shows id (with * for active, ! for hold), size, sender, reason and recipients."""
    deferred = _put(queue, "deferred", rcpts=("bob@remote.test", "carol@remote.test"))
    write_defer_log(queue, deferred, {"bob@remote.test": ("4.4.1", "connect to remote.test: Connection refused")})
    active = _put(queue, "active", sender="")
    held = _put(queue, "hold")
    status, out, err = run_cli("--config", config_dir, "postqueue", "-p")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("-Queue ID-")
    assert any(line.startswith(active + "*") and line.endswith("  MAILER-DAEMON") for line in lines)
    assert any(line.startswith(held + "!") for line in lines)
    at = [i for i, line in enumerate(lines) if line.startswith(deferred)][0]
    assert lines[at].split()[1] == "15"
    assert lines[at + 1] == "(connect to remote.test: Connection refused)"
    assert lines[at + 2].strip() == "bob@remote.test" and lines[at + 3].strip() == "carol@remote.test"
    assert lines[-1] == "-- 1 Kbytes in 3 Requests."


def test_postsuper_hold_release_requeue_delete(config_dir, queue):
    """postsuper -h/-H/-r/-d move and delete messages and report counts like Postfix."""
    first = _put(queue, "deferred")
    second = _put(queue, "incoming")
    status, out, err = run_cli("--config", config_dir, "postsuper", "-h", "ALL")
    assert "postsuper: Placed on hold: 2 messages" in err
    assert sorted(queue.list("hold")) == sorted([first, second])
    status, out, err = run_cli("--config", config_dir, "postsuper", "-H", first)
    assert "postsuper: %s: released from hold" % first in err and queue.list("deferred") == [first]
    assert os.path.exists(queue.path("public", "flush-" + first))
    status, out, err = run_cli("--config", config_dir, "postsuper", "-r", first)
    assert "postsuper: Requeued: 1 message" in err and queue.list("incoming") == [first]
    status, out, err = run_cli("--config", config_dir, "postsuper", "-d", "ALL")
    assert "postsuper: Deleted: 2 messages" in err
    assert run_cli("--config", config_dir, "mailq")[1] == "Mail queue is empty\n"


def test_postsuper_structure_check_removes_stale_files(config_dir, queue):
    """postsuper -s removes stale temporary files and moves junk to corrupt/."""
    stale = queue.path("incoming", "4XXXXXXXXXXXXXXXXX.tmp")
    open(stale, "w").close()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    open(queue.path("deferred", "junk"), "w").close()
    status, out, err = run_cli("--config", config_dir, "postsuper", "-s")
    assert not os.path.exists(stale) and queue.list("corrupt") == ["junk"]


def test_postcat_shows_envelope_and_content(config_dir, queue):
    """postcat -q prints envelope records, then the content, with Postfix's section markers."""
    queue_id = _put(queue, "deferred", rcpts=("bob@remote.test", "done@remote.test"))
    path = queue.path("deferred", queue_id)
    qfile.mark_done(path, [qfile.read(path).recipients[1].offset])
    status, out, err = run_cli("--config", config_dir, "postcat", "-q", queue_id)
    assert status == 0
    assert out.startswith("*** ENVELOPE RECORDS deferred/%s ***\n" % queue_id)
    assert "sender: alice@example.org\n" in out and "named_attribute: ret=HDRS\n" in out
    assert "recipient: bob@remote.test\n" in out and "done_recipient: done@remote.test\n" in out
    assert "*** MESSAGE CONTENTS deferred/%s ***\nSubject: x\n\nhi\n" % queue_id in out
    assert out.endswith("*** MESSAGE FILE END deferred/%s ***\n" % queue_id)
    assert run_cli("--config", config_dir, "postcat", "-q", "4NOSUCHNOSUCHNOSUC")[0] == 1


def test_postqueue_flush_makes_deferred_mail_due_and_triggers(config_dir, queue):
    """postqueue -f resets retry times and leaves the flush trigger; -s SITE picks by domain."""
    queue_id = _put(queue, "deferred")
    other = _put(queue, "deferred", rcpts=("x@elsewhere.test",))
    later = time.time() + 3600
    for q in (queue_id, other):
        os.utime(queue.path("deferred", q), (later, later))
    assert run_cli("--config", config_dir, "postqueue", "-s", "remote.test")[0] == 0
    assert os.stat(queue.path("deferred", queue_id)).st_mtime <= time.time()
    assert os.stat(queue.path("deferred", other)).st_mtime > time.time() + 3000
    assert os.path.exists(queue.path("public", "flush-" + queue_id))
    assert run_cli("--config", config_dir, "postqueue", "-f")[0] == 0
    assert os.path.exists(queue.path("public", "flush-ALL"))
    assert os.stat(queue.path("deferred", other)).st_mtime <= time.time()
