# -*- test-case-name: tests.store.test_maildir -*-
"""Maildir file names, flags and crash-safe delivery.

A message is one file.  Its name is ``BASE[:2,INFO]``: BASE is unique and
never changes; INFO holds the flags as single characters in ASCII order,
upper case for the standard flags and ``a``-``z`` for Dovecot keywords
(``dovecot-keywords`` maps letters to names, see :mod:`.keywords`)::

    1795424284.M246834P15597Q3.mail.example.com,S=1355,W=1394:2,FSab

BASE follows the maildir specification (``time.M<usec>P<pid>Q<seq>.host``,
with ``/`` and ``:`` in the host name written ``\\057`` and ``\\072``) and
Dovecot's size fields: ``,S=`` is the size of the file, ``,W=`` its size with
CRLF line ends (the IMAP RFC822.SIZE), so that a folder can be listed
without reading or even stat()ing its messages.

Delivery (:func:`deliver`) writes ``tmp/BASE`` (created with ``O_EXCL``),
fsyncs it, renames it into ``new/`` (or ``cur/`` when flags are given) and
fsyncs the directory.  Until the rename nothing is visible; a crash leaves
at most a file in ``tmp/``, which :func:`clean_tmp` removes after 36 hours
(the maildir specification's rule).

The directory fsync is a group commit (:func:`sync_dir`): deliveries into
one directory from several threads at once share one ``fsync`` of it, and
each returns only once an fsync that *started after its rename* has
completed, so every delivery is still durable when :func:`deliver` returns.

Flags map to IMAP as ``D`` \\Draft, ``F`` \\Flagged, ``R`` \\Answered,
``S`` \\Seen, ``T`` \\Deleted; ``P`` (passed) has no IMAP flag and is kept
as it is when other flags change.

Everything in this module that touches the file system blocks.
"""

import itertools
import os
import socket
import threading
import time
from dataclasses import dataclass

# The group commit of directory fsyncs lives in util.atomic, shared with the
# queue; maildir.sync_dir stays the store's name for it.
from mailstack.util.atomic import sync_dir

INFO_SEP = ":2,"

FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}
SYSTEM_FLAGS = frozenset(FLAG_LETTERS)
CANONICAL_FLAGS = {f.lower(): f for f in FLAG_LETTERS}

TMP_MAX_AGE = 36 * 3600

_sequence = itertools.count(1)
_sequence_lock = threading.Lock()


@dataclass(frozen=True)
class FileName:
    """A parsed maildir file name.

    Attributes:
        base: the unique part before ``:2,`` (the key of a message).
        info: the letters after ``:2,`` (standard flags and keyword letters), or None for no info part.
        size: the ``,S=`` size, or None.
        vsize: the ``,W=`` size, or None.
    """

    base: str
    info: object
    size: object
    vsize: object

    @property
    def name(self):
        """The file name as it is on disk."""
        return self.base if self.info is None else self.base + INFO_SEP + self.info


def parse(name):
    """Parse a maildir file name into a :class:`FileName`."""
    base, sep, info = name.partition(":")
    if sep:
        info = info[2:] if info.startswith("2,") else None
    else:
        info = None
    size = vsize = None
    for field in base.split(",")[1:]:
        key, eq, value = field.partition("=")
        if eq and value.isdigit():
            if key == "S":
                size = int(value)
            elif key == "W":
                vsize = int(value)
    return FileName(base, info, size, vsize)


def base_of(name):
    """Return the base (key) part of a maildir file name."""
    return name.partition(":")[0]


def info_letters(flags, keyword_letters=""):
    """Return the sorted info string for IMAP system ``flags`` and keyword letters."""
    letters = {FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS}
    letters.update(keyword_letters)
    return "".join(sorted(letters))


def split_info(info):
    """Split an info string into (system flags, keyword letters, other letters)."""
    flags, keywords, other = set(), [], []
    for letter in info or "":
        if letter in LETTER_FLAGS:
            flags.add(LETTER_FLAGS[letter])
        elif "a" <= letter <= "z":
            keywords.append(letter)
        else:
            other.append(letter)
    return frozenset(flags), "".join(keywords), "".join(other)


def _safe_host(hostname):
    return hostname.replace("/", "\\057").replace(":", "\\072")


def unique_base(hostname=None, now=None):
    """Return a new unique base name ``secs.M<usec>P<pid>Q<seq>.host`` (without size fields)."""
    now = time.time() if now is None else now
    secs = int(now)
    usec = int((now - secs) * 1000000)
    with _sequence_lock:
        seq = next(_sequence)
    return "%d.M%dP%dQ%d.%s" % (secs, usec, os.getpid(), seq, _safe_host(hostname or socket.gethostname()))


def virtual_size(data):
    """Return the size of ``data`` (LF line ends) with CRLF line ends: the IMAP RFC822.SIZE."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def to_lf(data):
    """Return ``data`` with CRLF line ends turned into LF, as maildir files are stored."""
    return data.replace(b"\r\n", b"\n")


def ensure(path, mode=0o700):
    """Create the maildir ``path`` (with tmp/, new/ and cur/) if it does not exist; return path."""
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), mode=mode, exist_ok=True)
    return path


@dataclass(frozen=True)
class Delivered:
    """The result of a delivery.

    Attributes:
        path: the full path of the message file.
        name: its file name (``BASE`` or ``BASE:2,INFO``).
        base: its base name, the message's key.
        size: its size in bytes (as stored, LF line ends).
        vsize: its size with CRLF line ends.
    """

    path: str
    name: str
    base: str
    size: int
    vsize: int


def deliver(maildir, data, info=None, hostname=None, mtime=None, fsync=True, before_commit=None,
            sync_directory=True):
    """Deliver ``data`` into ``maildir`` safely; return :class:`Delivered`.  Blocks.

    Args:
        maildir: the maildir directory (with tmp/, new/, cur/).
        data: the message: bytes, or a binary file object read in chunks
            (big messages need not be in memory); CRLF line ends are stored as LF.
        info: flag letters for the info part; a message with info goes to
            ``cur/``, one without (None) to ``new/``.
        hostname: the host name in the unique name.
        mtime: the message's internal date (seconds since the epoch), set as the file mtime.
        fsync: fsync the file and the directory (Dovecot's ``mail_fsync``).
        before_commit: called with the tmp path just before the rename; may
            raise to abort (quota checks do), leaving nothing behind.
        sync_directory: with ``fsync``, fsync the directory before returning;
            False leaves that to the caller, who must call :func:`sync_dir`
            on the directory of the result's ``path`` before anyone is told
            the message is delivered (a batch of deliveries shares one).

    Raises:
        OSError: on any file system error; the tmp file is removed.
    """
    while True:
        # The sizes are only known once written: the tmp name has none, the
        # final name gets them (the base stays unique without them).
        unique = unique_base(hostname)
        tmp_path = os.path.join(maildir, "tmp", unique)
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            continue
    try:
        try:
            size, vsize = _write_message(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if mtime is not None:
            os.utime(tmp_path, (mtime, mtime))
    except BaseException:
        _discard(tmp_path)
        raise
    return _commit(maildir, tmp_path, unique, size, vsize, info, fsync and sync_directory, before_commit)


def link(source, maildir, size, vsize, info=None, hostname=None, fsync=True, before_commit=None):
    """Put a hard link to message file ``source`` into ``maildir`` under a new name; return :class:`Delivered`.

    IMAP COPY without copying data (Dovecot's ``maildir_copy_with_hardlinks``):
    maildir files never change once delivered, so sharing the inode is
    safe, and the internal date (mtime) is kept.  Blocks.

    Raises:
        FileNotFoundError: when ``source`` is gone (renamed or expunged meanwhile).
        OSError: when hard links are not possible (another file system); copy instead.
    """
    unique = unique_base(hostname)
    tmp_path = os.path.join(maildir, "tmp", unique)
    os.link(source, tmp_path)
    return _commit(maildir, tmp_path, unique, size, vsize, info, fsync, before_commit)


def _discard(tmp_path):
    try:
        os.unlink(tmp_path)
    except OSError:
        pass


def _commit(maildir, tmp_path, unique, size, vsize, info, fsync, before_commit):
    """Rename a complete ``tmp/`` file into ``new/`` (``cur/`` when it has info); with ``fsync``, fsync that directory.

    The ``tmp/`` file is removed when anything before the rename fails.
    """
    try:
        if before_commit is not None:
            before_commit(tmp_path)
        base = "%s,S=%d,W=%d" % (unique, size, vsize)
        name = base if info is None else base + INFO_SEP + info
        subdir = "new" if info is None else "cur"
        final = os.path.join(maildir, subdir, name)
        os.rename(tmp_path, final)
    except BaseException:
        _discard(tmp_path)
        raise
    if fsync:
        sync_dir(os.path.join(maildir, subdir))
    return Delivered(final, name, base, size, vsize)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_message(fd, data, chunk_size=1 << 16):
    """Write ``data`` (bytes or a binary file) with LF line ends; return (size, vsize)."""
    if not hasattr(data, "read"):
        data = to_lf(bytes(data))
        _write_all(fd, data)
        return len(data), virtual_size(data)
    size = vsize = 0
    carry = b""
    while True:
        chunk = data.read(chunk_size)
        if not chunk:
            break
        chunk = carry + chunk
        # A CR at the end of a chunk may start a CRLF split across chunks.
        carry, chunk = (b"\r", chunk[:-1]) if chunk.endswith(b"\r") else (b"", chunk)
        chunk = to_lf(chunk)
        _write_all(fd, chunk)
        size += len(chunk)
        vsize += virtual_size(chunk)
    if carry:
        _write_all(fd, carry)
        size += 1
        vsize += 1
    return size, vsize


def clean_tmp(maildir, now=None, max_age=TMP_MAX_AGE):
    """Remove files in ``maildir/tmp`` older than ``max_age``; return how many.  Blocks."""
    now = time.time() if now is None else now
    removed = 0
    tmp = os.path.join(maildir, "tmp")
    try:
        entries = list(os.scandir(tmp))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.is_file() and now - entry.stat().st_atime > max_age:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed
