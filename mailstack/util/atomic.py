# -*- test-case-name: tests.util.test_atomic -*-
"""Replace a file atomically and durably.

``replace_file(path, data)`` writes ``data`` to a temporary file in the same
directory, fsyncs it, gives it the mode of the file it replaces (or
``default_mode`` for a new file), renames it over ``path`` and fsyncs the
directory: readers see the old file or the new one, never a part, and after
a crash the new content is either all there or not at all.  On failure the
temporary file is removed and the error re-raised; ``path`` is untouched.

Used by postconf -e (main.cf), postmap (table indexes), the passwd-file
editor and mailstack init. Blocking: call it from a thread in a server.

``sync_dir(path)`` is the group commit of directory fsyncs that threads
share (maildir deliveries, the queue's thread jobs): see its docstring.
"""

import contextlib
import os
import tempfile
import threading


def fsync_directory(directory):
    """fsync a directory, so renames and new names in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path, data, default_mode=0o644):
    """Atomically replace ``path`` with ``data`` (bytes or str, UTF-8).

    Raises:
        OSError: the file could not be written; ``path`` is unchanged.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = default_mode
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


class _DirSync:
    """Group-commit state of one directory (see :func:`sync_dir`)."""

    __slots__ = ("requested", "done", "running", "users")

    def __init__(self):
        self.requested = 0
        self.done = 0
        self.running = False
        self.users = 0


_dir_syncs = {}
_dir_syncs_cond = threading.Condition()


def sync_dir(path):
    """fsync directory ``path`` after a rename into it, shared with concurrent callers.  Blocks.

    Returns once an fsync of ``path`` that started after this call has
    completed: one fsync covers every rename made before it started, so
    threads delivering into the same directory at once wait for one
    journal commit instead of queueing one each.

    Raises:
        OSError: when this caller's own fsync fails (waiters then retry theirs).
    """
    cond = _dir_syncs_cond
    with cond:
        entry = _dir_syncs.get(path)
        if entry is None:
            entry = _dir_syncs[path] = _DirSync()
        entry.users += 1
        entry.requested += 1
        mine = entry.requested
        try:
            while entry.done < mine:
                if entry.running:
                    cond.wait()
                    continue
                entry.running = True
                target = entry.requested
                synced = False
                cond.release()
                try:
                    fsync_directory(path)
                    synced = True
                finally:
                    cond.acquire()
                    entry.running = False
                    if synced:
                        entry.done = max(entry.done, target)
                    cond.notify_all()
        finally:
            entry.users -= 1
            if not entry.users:
                del _dir_syncs[path]
