# -*- test-case-name: tests.admin.test_user -*-
"""Editing a Dovecot passwd-file safely: lock, rewrite to a temporary file, rename.

Design note (races): several ``mailstack user`` commands, and servers in
other processes reading the file, may run at once.  Writers take an
exclusive ``flock`` on ``PATH.lock`` (a separate file, because the
passwd-file itself is replaced), read the current file, write the new
content to ``PATH.tmp.PID`` in the same directory, fsync it, rename it over
the old file and fsync the directory.  Readers never lock: rename is
atomic, so they see the old or the new file, and the passwd-file reader
notices the new inode and re-reads.  Comments, blank lines and the order of
other users are kept; the file mode is kept (0640 for a new file).
"""

import contextlib
import fcntl
import os

from mailstack.util.atomic import replace_file


class PasswdEditError(Exception):
    """The edit cannot be done (user exists, user unknown, file unwritable)."""


@contextlib.contextmanager
def _locked(path):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_lines(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as err:
        raise PasswdEditError("cannot read %s: %s" % (path, err)) from None


def _write_lines(path, lines):
    try:
        replace_file(path, "".join(line + "\n" for line in lines), default_mode=0o640)
    except OSError as err:
        raise PasswdEditError("cannot write %s: %s" % (path, err.strerror)) from None


def _user_of(line):
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    return line.split(":", 1)[0]


def format_line(user, password, uid=-1, gid=-1, gecos="", home="", shell="", extra=""):
    """Return one passwd-file line; empty trailing fields are dropped.

    Raises:
        PasswdEditError: when a field contains ':' or a newline.
    """
    fields = [user, password, "" if uid < 0 else str(uid), "" if gid < 0 else str(gid), gecos, home, shell, extra]
    for value in fields[:7]:
        if ":" in value or "\n" in value:
            raise PasswdEditError("passwd-file fields cannot contain ':' or newlines: %r" % value)
    if "\n" in extra:
        raise PasswdEditError("extra fields cannot contain newlines")
    while len(fields) > 2 and not fields[-1]:
        fields.pop()
    return ":".join(fields)


def list_users(path):
    """Return the user names in the file, in file order."""
    return [user for user in map(_user_of, _read_lines(path)) if user]


def add_user(path, line):
    """Append the passwd-file ``line`` (from :func:`format_line`).

    Raises:
        PasswdEditError: when the user already exists.
    """
    user = _user_of(line)
    with _locked(path):
        lines = _read_lines(path)
        if any(_user_of(existing) == user for existing in lines):
            raise PasswdEditError("user %s already exists in %s" % (user, path))
        _write_lines(path, lines + [line])


def remove_user(path, user):
    """Remove ``user``.

    Raises:
        PasswdEditError: when the user is not in the file.
    """
    with _locked(path):
        lines = _read_lines(path)
        kept = [line for line in lines if _user_of(line) != user]
        if len(kept) == len(lines):
            raise PasswdEditError("user %s does not exist in %s" % (user, path))
        _write_lines(path, kept)


def set_password(path, user, password):
    """Replace the password field of ``user`` with ``password`` (a ``{SCHEME}`` value).

    Raises:
        PasswdEditError: when the user is not in the file.
    """
    if ":" in password or "\n" in password:
        raise PasswdEditError("stored password cannot contain ':' or newlines")
    with _locked(path):
        lines = _read_lines(path)
        for index, line in enumerate(lines):
            if _user_of(line) == user:
                fields = line.split(":", 7)
                fields[1:2] = [password]
                lines[index] = ":".join(fields)
                _write_lines(path, lines)
                return
        raise PasswdEditError("user %s does not exist in %s" % (user, path))


