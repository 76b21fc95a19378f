# -*- test-case-name: tests.store.test_quota -*-
"""Maildir++ quota: the ``maildirsize`` file at the root of a user's maildir.

Format (Maildir++ specification, also read and written by Dovecot's
``quota = maildir`` backend and Courier)::

    10000000S,1000C
    4096 1
    -2048 -1

The first line is the quota definition: a byte limit with ``S`` and/or a
message-count limit with ``C``, comma-separated (either may be absent).
Every other line is a change ``<bytes> <count>``; the usage is their sum.
Writers append lines with ``O_APPEND`` (one ``write()``), so no lock is
needed for updates.

Recalculation rules of the specification, followed here:

* no ``maildirsize`` yet, or a definition different from the configured
  limits → recalculate;
* a delivery that would exceed the quota while the file is older than 15
  minutes → recalculate and check again (the file may have drifted);
* the file grew past 5120 bytes → recalculate after the update.

A recalculation adds up every message of every folder (``cur/`` and
``new/`` of the root and of each ``.Folder``), sizes from the ``,S=``
name field or ``stat()``, writes the result to a file in ``tmp/`` and
renames it over ``maildirsize``.  Trash counts like every folder (Dovecot's
default).  Everything here blocks.
"""

import os
import re
import time

from mailstack.store import maildir
from mailstack.store.errors import QuotaExceeded

FILENAME = "maildirsize"
MAX_FILE_SIZE = 5120
RECALC_AGE = 15 * 60

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
_SIZE = re.compile(r"^(\d+)\s*([bkmgt]?)b?$", re.I)


def parse_rule(text):
    """Parse a Dovecot-style quota rule (``*:storage=1G:messages=1000``); return (bytes, count).

    Either value is None when the rule does not limit it; an empty rule
    gives (None, None).

    Raises:
        ValueError: for a malformed rule.
    """
    text = (text or "").strip()
    if not text or text.lower() in ("none", "*:ignore"):
        return None, None
    parts = text.split(":")
    if parts[0] in ("*", ""):
        parts = parts[1:]
    limit_bytes = limit_count = None
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq:
            raise ValueError("bad quota rule part %r" % part)
        if key in ("storage", "bytes"):
            match = _SIZE.match(value.strip())
            if not match:
                raise ValueError("bad quota size %r" % value)
            limit_bytes = int(match.group(1)) * _UNITS[match.group(2).lower()]
            if key == "storage" and not match.group(2):
                limit_bytes *= 1024  # Dovecot: storage= without a unit is kilobytes
        elif key == "messages":
            if not value.strip().isdigit():
                raise ValueError("bad message count %r" % value)
            limit_count = int(value)
        else:
            raise ValueError("unknown quota rule key %r" % key)
    return limit_bytes or None, limit_count or None


def format_definition(limit_bytes, limit_count):
    """Return the first line of maildirsize for the limits (``"1000S,10C"``)."""
    parts = []
    if limit_bytes:
        parts.append("%dS" % limit_bytes)
    if limit_count:
        parts.append("%dC" % limit_count)
    return ",".join(parts)


def parse_definition(line):
    """Return (bytes, count) limits from the first line of maildirsize."""
    limit_bytes = limit_count = None
    for part in line.strip().split(","):
        if part[:-1].isdigit():
            if part.endswith("S"):
                limit_bytes = int(part[:-1]) or None
            elif part.endswith("C"):
                limit_count = int(part[:-1]) or None
    return limit_bytes, limit_count


class Quota:
    """The Maildir++ quota of one user's maildir.

    Args:
        root: the user's maildir (INBOX) directory.
        limit_bytes, limit_count: configured limits (None: take the file's
            definition; when both are None and the file has none, there is no quota).
        tempfail: whether exceeding it is a temporary failure (``quota_full_tempfail``).
        configured: whether the limits come from configuration (then they
            replace the file's definition).
    """

    def __init__(self, root, limit_bytes=None, limit_count=None, tempfail=False, configured=False,
                 fsync=True, now=time.time):
        self.root = root
        self.path = os.path.join(root, FILENAME)
        self.limit_bytes = limit_bytes
        self.limit_count = limit_count
        self.tempfail = tempfail
        self.configured = configured
        self._fsync = fsync
        self._now = now

    def _read(self):
        """Return (definition line, used bytes, used count, file size, mtime) or None when absent."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
                st = os.fstat(handle.fileno())
        except FileNotFoundError:
            return None
        lines = data.decode("ascii", "replace").split("\n")
        used_bytes = used_count = 0
        for line in lines[1:]:
            fields = line.split()
            if len(fields) >= 2:
                try:
                    used_bytes += int(fields[0])
                    used_count += int(fields[1])
                except ValueError:
                    continue
        return lines[0], used_bytes, used_count, st.st_size, st.st_mtime

    def _limits(self, definition):
        if self.configured:
            return self.limit_bytes, self.limit_count
        return parse_definition(definition or "")

    @property
    def active(self):
        """True when a limit is configured or ``maildirsize`` exists."""
        return self.configured or os.path.exists(self.path)

    def usage(self):
        """Return (used bytes, used messages, limit bytes, limit messages); recalculates when needed."""
        state = self._current()
        if state is None:
            return 0, 0, None, None
        definition, used_bytes, used_count, _size, _mtime = state
        limit_bytes, limit_count = self._limits(definition)
        return used_bytes, used_count, limit_bytes, limit_count

    def _current(self):
        state = self._read()
        wanted = format_definition(self.limit_bytes, self.limit_count) if self.configured else None
        if state is None:
            if not self.configured:
                return None
            self.recalculate()
            state = self._read()
        elif wanted is not None and state[0] != wanted:
            self.recalculate()
            state = self._read()
        return state

    def reserve(self, size, count=1):
        """Check that ``size`` bytes and ``count`` messages fit, and count them.  Blocks.

        Raises:
            QuotaExceeded: when they do not fit (temporary per ``tempfail``).
        """
        state = self._current()
        if state is None:
            return
        definition, used_bytes, used_count, file_size, mtime = state
        limit_bytes, limit_count = self._limits(definition)
        if self._over(used_bytes, used_count, size, count, limit_bytes, limit_count) and \
                self._now() - mtime > RECALC_AGE:
            self.recalculate()
            definition, used_bytes, used_count, file_size, mtime = self._read()
        if self._over(used_bytes, used_count, size, count, limit_bytes, limit_count):
            raise QuotaExceeded("Mailbox full: quota exceeded (%s)" % self._describe(
                used_bytes, used_count, limit_bytes, limit_count), temporary=self.tempfail)
        self.update(size, count)

    @staticmethod
    def _over(used_bytes, used_count, size, count, limit_bytes, limit_count):
        if limit_bytes and size > 0 and used_bytes + size > limit_bytes:
            return True
        return bool(limit_count and count > 0 and used_count + count > limit_count)

    @staticmethod
    def _describe(used_bytes, used_count, limit_bytes, limit_count):
        parts = []
        if limit_bytes:
            parts.append("%d of %d bytes" % (used_bytes, limit_bytes))
        if limit_count:
            parts.append("%d of %d messages" % (used_count, limit_count))
        return ", ".join(parts)

    def update(self, size, count):
        """Append a ``<size> <count>`` change when the quota is in use.  Blocks."""
        if not self.active:
            return
        if not os.path.exists(self.path):
            self.recalculate()
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"%d %d\n" % (size, count))
            file_size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if file_size >= MAX_FILE_SIZE:
            self.recalculate()

    def recalculate(self):
        """Count every message of every folder and rewrite ``maildirsize``; return (bytes, count).  Blocks."""
        definition = None
        if self.configured:
            definition = format_definition(self.limit_bytes, self.limit_count)
        else:
            state = self._read()
            definition = state[0] if state else ""
        total_bytes = total_count = 0
        for folder in self._folders():
            for sub in ("cur", "new"):
                directory = os.path.join(folder, sub)
                try:
                    names = os.listdir(directory)
                except FileNotFoundError:
                    continue
                for name in names:
                    if name.startswith("."):
                        continue
                    size = maildir.parse(name).size
                    if size is None:
                        try:
                            size = os.stat(os.path.join(directory, name)).st_size
                        except FileNotFoundError:
                            continue
                    total_bytes += size
                    total_count += 1
        tmp = os.path.join(self.root, "tmp", "%s.maildirsize" % maildir.unique_base())
        with open(tmp, "wb") as handle:
            handle.write(("%s\n%d %d\n" % (definition, total_bytes, total_count)).encode("ascii"))
            if self._fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.rename(tmp, self.path)
        return total_bytes, total_count

    def _folders(self):
        yield self.root
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return
        for name in entries:
            if name.startswith(".") and name not in (".", ".."):
                path = os.path.join(self.root, name)
                if os.path.isdir(os.path.join(path, "cur")):
                    yield path
