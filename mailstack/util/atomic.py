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
"""

import contextlib
import os
import tempfile


def fsync_directory(directory):
    """fsync a directory, so renames and new names in it are durable."""
    fd = os.open(directory, os.O_RDONLY)
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
