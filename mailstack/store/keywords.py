# -*- test-case-name: tests.store.test_folder -*-
"""IMAP keywords as Dovecot stores them in a maildir (``dovecot-keywords``).

Keywords (``$Forwarded``, ``Junk``, any flag without a backslash) live in the
info part of a message's file name as the letters ``a`` to ``z``; the
folder's ``dovecot-keywords`` file maps each letter's index to its name, one
``<index> <name>`` line each (``0 $Forwarded`` is ``a``).  So at most 26
keywords exist per folder, as in Dovecot; asking for a 27th raises
:class:`KeywordLimitError`.

A new keyword is added under the Dovecot dot-lock ``dovecot-keywords.lock``
and the file is replaced atomically, so that two processes never give one
letter two names.  Names compare case-insensitively (RFC 3501 §2.3.2);
the first spelling is kept.  All methods that touch the file block.
"""

import os
import threading

from mailstack.store import dotlock

FILENAME = "dovecot-keywords"
MAX_KEYWORDS = 26


class KeywordLimitError(Exception):
    """The folder already has 26 keywords; no letter is left for another."""


class Keywords:
    """The keyword table of one maildir folder."""

    def __init__(self, folder_path, fsync=True):
        self.path = os.path.join(folder_path, FILENAME)
        self._fsync = fsync
        self._names = []
        self._stamp = None
        self._lock = threading.Lock()

    def _read(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._names, self._stamp = [], None
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        names = {}
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                index, _, name = line.rstrip("\n").partition(" ")
                if index.isdigit() and name and int(index) < MAX_KEYWORDS:
                    names[int(index)] = name
        self._names = [names.get(i) for i in range(max(names) + 1)] if names else []
        self._stamp = stamp

    def names(self):
        """Return the list of keyword names by index (None for gaps)."""
        with self._lock:
            self._read()
            return list(self._names)

    def names_for(self, letters):
        """Return the keyword names for info ``letters``; unknown letters are skipped."""
        with self._lock:
            if any(ord(c) - 97 >= len(self._names) for c in letters):
                self._read()
            result = []
            for char in letters:
                index = ord(char) - 97
                if 0 <= index < len(self._names) and self._names[index]:
                    result.append(self._names[index])
            return result

    def letters_for(self, names, create=True):
        """Return the info letters for keyword ``names``.

        Args:
            names: keyword names.
            create: give a letter to names that have none yet (else skip them).

        Raises:
            KeywordLimitError: when a new keyword needs a 27th letter.
        """
        with self._lock:
            self._read()
            letters = []
            missing = []
            for name in names:
                index = self._index(name)
                if index is None:
                    missing.append(name)
                else:
                    letters.append(chr(97 + index))
            if missing and create:
                letters.extend(self._add(missing))
            return "".join(sorted(set(letters)))

    def _index(self, name):
        lower = name.lower()
        for index, known in enumerate(self._names):
            if known is not None and known.lower() == lower:
                return index
        return None

    def _add(self, names):
        lock = dotlock.acquire(self.path)
        try:
            self._stamp = None
            self._read()
            letters = []
            for name in names:
                index = self._index(name)
                if index is None:
                    if None in self._names:
                        index = self._names.index(None)
                        self._names[index] = name
                    elif len(self._names) < MAX_KEYWORDS:
                        index = len(self._names)
                        self._names.append(name)
                    else:
                        raise KeywordLimitError("no more than %d keywords per folder" % MAX_KEYWORDS)
                letters.append(chr(97 + index))
            text = "".join("%d %s\n" % (i, n) for i, n in enumerate(self._names) if n is not None)
            lock.replace(text.encode("utf-8"), fsync=self._fsync)
            self._stamp = None
            return letters
        finally:
            lock.release()
