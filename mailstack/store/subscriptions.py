# -*- test-case-name: tests.store.test_mailbox -*-
"""Folder subscriptions in Dovecot 2.3's ``subscriptions`` file.

Format, as Dovecot 2.3 writes it at the root of the maildir::

    V\\t2
    <empty line>
    Entw&APw-rfe\\tSub
    INBOX

A version line ``V<TAB>2`` and an empty line, then one subscribed folder per
line: its on-disk (modified UTF-7) name parts separated by TAB instead of
the hierarchy separator.  Dovecot 1.x/2.0 files (no header, one name per
line with the separator) are read too.  The file is replaced under a
dot-lock (``subscriptions.lock``), so concurrent (un)subscribes are not
lost.  Everything here blocks.
"""

import os

from mailstack.store import dotlock, mutf7

FILENAME = "subscriptions"


def _encode(name, separator):
    return "\t".join(mutf7.encode(part) for part in name.split(separator))


def _decode(line, separator):
    try:
        return separator.join(mutf7.decode(part) for part in line.split("\t"))
    except ValueError:
        return separator.join(line.split("\t"))


def read(root, separator="."):
    """Return the list of subscribed folder names (Unicode), in file order."""
    try:
        with open(os.path.join(root, FILENAME), encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().split("\n")
    except FileNotFoundError:
        return []
    if lines and lines[0].startswith("V\t"):
        lines = lines[1:]
        if lines and lines[0] == "":
            lines = lines[1:]
        return [_decode(line, separator) for line in lines if line]
    result = []
    for line in lines:
        if line:
            try:
                result.append(separator.join(mutf7.decode(p) for p in line.split(separator)))
            except ValueError:
                result.append(line)
    return result


def change(root, subscribe=(), unsubscribe=(), separator=".", fsync=True):
    """Add and remove subscriptions; return the new list.  Blocks (takes the dot-lock)."""
    path = os.path.join(root, FILENAME)
    lock = dotlock.acquire(path)
    try:
        names = read(root, separator)
        for name in subscribe:
            if name not in names:
                names.append(name)
        names = [n for n in names if n not in set(unsubscribe)]
        text = "V\t2\n\n" + "".join(_encode(n, separator) + "\n" for n in names)
        lock.replace(text.encode("utf-8", "surrogateescape"), fsync=fsync)
        return names
    finally:
        lock.release()
