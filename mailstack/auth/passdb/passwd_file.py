# -*- test-case-name: tests.auth.test_passdb -*-
"""The passwd-file passdb, and the file reader its userdb twin shares.

Format (Dovecot's ``passwd-file``), one user a line::

    user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields

Empty trailing fields may be left out; lines starting with ``#`` and blank
lines are ignored.  ``extra_fields`` is a space-separated list of
``name=value`` (Dovecot's passdb/userdb extra fields): ``nopassword``,
``allow_nets=192.0.2.0/24``, ``userdb_mail=maildir:...``,
``userdb_quota_rule=*:storage=1G``.

Args (``passdb = passwd-file:[scheme=S] [username_format=F] PATH``): PATH
may contain ``%u``, ``%n``, ``%d``, so that each domain can have its own
file (``/etc/mail/%d/passwd``); a missing per-domain file means the user
is unknown, a missing fixed file is an internal failure.  ``scheme`` is
the scheme of bare hashes in this file, ``username_format`` the key used
to look users up (default ``%u``).

The file is re-read when its inode, size or modification time change, in a
thread (design note: the reactor never touches the disk here).  Several
processes may share the file: ``mailstack user`` replaces it atomically by
rename, so a reader sees either the old or the new file, never a mix.
"""

import os
import threading

from mailstack.auth import username as usernames
from mailstack.auth.passdb.base import (DriverArgsError, PassdbEntry, PassdbError, parse_args,
                                        parse_extra_fields)


class PasswdFileEntry:
    """One parsed line of a passwd-file."""

    __slots__ = ("user", "password", "uid", "gid", "gecos", "home", "shell", "extra")

    def __init__(self, fields):
        fields = fields + [""] * (8 - len(fields))
        self.user, self.password, uid, gid, self.gecos, self.home, self.shell = fields[:7]
        self.uid = int(uid) if uid.strip().isdigit() else -1
        self.gid = int(gid) if gid.strip().isdigit() else -1
        self.extra = parse_extra_fields(fields[7])


def parse_passwd_file(text, path="passwd"):
    """Parse passwd-file text into ``{user: PasswdFileEntry}``.

    Raises:
        PassdbError: for a line without a user name.
    """
    users = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":", 7)
        if not fields[0]:
            raise PassdbError("%s:%d: missing user name" % (path, number))
        users[fields[0]] = PasswdFileEntry(fields)
    return users


class PasswdFileReader:
    """Reads and caches passwd-files by path, re-reading changed ones.

    Args:
        template: the path, possibly with ``%u``/``%n``/``%d``.
    """

    def __init__(self, template):
        if not template:
            raise DriverArgsError("passwd-file needs a file name")
        self.template = template
        self._variable = "%" in template
        self._files = {}  # path -> (stamp, users)
        self._lock = threading.Lock()

    def find(self, user):
        """Return the :class:`PasswdFileEntry` for ``user``, or None.  Blocking: call in a thread.

        Raises:
            PassdbError: when the file cannot be read or parsed.
        """
        path = usernames.expand(self.template, user) if self._variable else self.template
        try:
            info = os.stat(path)
        except FileNotFoundError:
            if self._variable:
                return None
            raise PassdbError("stat(%s) failed: No such file or directory" % path) from None
        except OSError as err:
            raise PassdbError("stat(%s) failed: %s" % (path, err.strerror)) from None
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            cached = self._files.get(path)
            if cached is None or cached[0] != stamp:
                try:
                    with open(path, encoding="utf-8") as handle:
                        users = parse_passwd_file(handle.read(), path)
                except (OSError, UnicodeDecodeError) as err:
                    raise PassdbError("open(%s) failed: %s" % (path, err)) from None
                cached = self._files[path] = (stamp, users)
        return cached[1].get(user)


class PasswdFilePassdb:
    """``passdb = passwd-file:PATH``."""

    name = "passwd-file"
    credentials_lookup = True

    def __init__(self, args, ctx):
        options, path = parse_args(args, ("scheme", "username_format"))
        self._reader = PasswdFileReader(path)
        self._scheme = options.get("scheme")
        self._format = options.get("username_format", "%u")
        self._ctx = ctx

    @property
    def path(self):
        """The passwd-file path template."""
        return self._reader.template

    async def lookup(self, user):
        """Return a :class:`PassdbEntry` or None; raises :class:`PassdbError` on failure."""
        key = usernames.expand(self._format, user)
        entry = await self._ctx.run_in_thread(self._reader.find, key)
        if entry is None:
            return None
        return PassdbEntry(user, entry.password or None, dict(entry.extra), self._scheme)
