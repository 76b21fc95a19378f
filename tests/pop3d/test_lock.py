"""The POP3 session lock: in-process registry and a POSIX lock other processes see."""

import subprocess
import sys
import textwrap

import pytest

from mailstack.pop3d.lock import LOCK_NAME, MailboxInUse, SessionLocks
from tests.conftest import subprocess_env


def test_second_lock_in_process_refused_until_release(tmp_path):
    """A second session of the same process is refused; after release the lock is free again."""
    locks = SessionLocks()
    first = locks.acquire(str(tmp_path))
    assert locks.is_locked(str(tmp_path))
    with pytest.raises(MailboxInUse, match="this process"):
        locks.acquire(str(tmp_path))
    first.release()
    first.release()  # idempotent
    assert not first.held
    second = locks.acquire(str(tmp_path))
    second.release()
    assert (tmp_path / LOCK_NAME).exists()


def test_symlinked_path_is_the_same_mailbox(tmp_path):
    """Two paths to one maildir share one lock."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    locks = SessionLocks()
    held = locks.acquire(str(tmp_path / "real"))
    with pytest.raises(MailboxInUse):
        locks.acquire(str(tmp_path / "link"))
    held.release()


def _other_process(directory, hold_seconds=0):
    code = textwrap.dedent("""
        import sys, time
        from mailstack.pop3d.lock import SessionLocks, MailboxInUse
        try:
            lock = SessionLocks().acquire(sys.argv[1])
        except MailboxInUse:
            print("in-use", flush=True)
            sys.exit(0)
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """)
    return subprocess.Popen([sys.executable, "-c", code, str(directory), str(hold_seconds)],
                            stdout=subprocess.PIPE, text=True, env=subprocess_env())


def test_lock_excludes_other_processes_and_dies_with_them(tmp_path):
    """Another process sees our lock; a holder that exits (or crashes) leaves the mailbox free."""
    locks = SessionLocks()
    held = locks.acquire(str(tmp_path))
    proc = _other_process(tmp_path)
    assert proc.communicate(timeout=10)[0].strip() == "in-use"
    held.release()

    holder = _other_process(tmp_path, hold_seconds=30)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(MailboxInUse, match="process lock"):
        locks.acquire(str(tmp_path))
    holder.kill()
    holder.wait(timeout=10)
    holder.stdout.close()
    locks.acquire(str(tmp_path)).release()
