# -*- test-case-name: tests.tables.test_hash -*-
"""The lookup-table interface and what every table type shares.

A table answers one question: what is the value for this key?  Three
answers are possible and never merged (Postfix ``dict.h``, ``dict->error``):

- a value (str): found;
- ``None``: not found;
- :class:`TableTemporaryError`: the table could not answer (a missing or
  broken file, a database error).  Callers turn it into a temporary
  failure (``451 4.3.0 Temporary lookup failure``), never into "not found".

``Table.lookup(key)`` returns a Deferred for all of them.  Tables whose
data is in memory (every file type, ``static``, ``inline``) answer
synchronously through ``lookup_now(key)`` and their Deferred has already
fired; tables that do I/O (``sqlite``, ``unix``) run the query in the
reactor's thread pool and ``lookup_now`` raises :class:`NotInMemoryError`.
``lookup_blocking(key)`` answers on the calling thread for every type
(command-line tools, worker threads).

File-based tables re-read their file when it changes (checked at most once
per ``check_interval`` seconds of the injected clock), so ``postmap`` or an
edit takes effect without a restart.  Parsing errors name
``file:line: reason``.

Source-file syntax shared by every file type (Postfix ``postmap(1)``):
lines whose first non-blank character is ``#`` and blank lines are
ignored; a line starting with white space continues the previous logical
line.
"""

import os

from twisted.internet import defer, threads
from twisted.logger import Logger

from mailstack.config.maincf import ConfigError

log = Logger(namespace="mailstack.tables")


class TableTemporaryError(Exception):
    """A table could not answer; the caller must answer "try again later"."""


class TableConfigError(ConfigError):
    """A table name or table file is wrong; ``str()`` names ``file:line: reason``."""


class NotInMemoryError(TypeError):
    """``lookup_now`` was called on a table whose lookups do I/O."""


class Table:
    """Base of every table type.

    Attributes:
        type_name: the registry word (``hash``, ``regexp``...).
        name: the part after ``type:``.
        fixed: True for tables keyed by exact strings (Postfix
            ``DICT_FLAG_FIXED``); search lists ask them for partial keys
            (``user@``, parent domains, network prefixes).  Pattern tables
            (``regexp``, ``pcre``, ``cidr``) only see the full key.
        fold: True when keys are lower-cased before lookup (Postfix
            ``DICT_FLAG_FOLD_FIX``).
        synchronous: True when ``lookup_now`` works.
    """

    type_name = "?"
    fixed = True
    fold = True
    synchronous = True

    def __init__(self, name, context=None):
        self.name = name
        self.context = context

    @property
    def spec(self):
        """The table as written in main.cf: ``type:name``."""
        return "%s:%s" % (self.type_name, self.name)

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, self.spec)

    def _get(self, key):
        """Return the value for an already folded key, or None.  Subclasses implement."""
        raise NotImplementedError

    def _fold(self, key):
        return key.lower() if self.fold else key

    def lookup_blocking(self, key):
        """Look ``key`` up on the calling thread.

        Returns:
            the value (str), or None when the key is not in the table.

        Raises:
            TableTemporaryError: the table cannot answer now.
        """
        try:
            return self._get(self._fold(key))
        except TableTemporaryError:
            raise
        except (OSError, ValueError, UnicodeError) as err:
            raise TableTemporaryError("%s: lookup error: %s" % (self.spec, err)) from err

    def lookup_now(self, key):
        """Look ``key`` up synchronously; only for tables whose data is in memory.

        Returns:
            the value, or None when not found.

        Raises:
            TableTemporaryError: the table cannot answer now.
            NotInMemoryError: the table type does I/O; use :meth:`lookup`.
        """
        if not self.synchronous:
            raise NotInMemoryError("%s: lookups do I/O; use lookup()" % self.spec)
        return self.lookup_blocking(key)

    def lookup(self, key):
        """Look ``key`` up.

        Returns:
            a Deferred firing with the value or None, or failing with
            :class:`TableTemporaryError`.  It has already fired for
            in-memory tables.
        """
        if self.synchronous:
            try:
                return defer.succeed(self.lookup_blocking(key))
            except TableTemporaryError as err:
                return defer.fail(err)
        reactor = self.context.reactor
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), self.lookup_blocking, key)

    def close(self):
        """Release files and connections; the table must not be used afterwards."""


def logical_lines(text, source):
    """Yield ``(lineno, text)`` for each logical line of a table source file.

    Comments and blank lines are dropped; a line that starts with white
    space is appended to the previous one, its leading white space kept
    and the newline dropped, as Postfix's ``readllines`` does.  ``lineno``
    is the number of the first physical line.

    Raises:
        TableConfigError: for a continuation line with nothing to continue.
    """
    current = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0].isspace():
            if current is None:
                raise TableConfigError("%s:%d: continuation line without a line to continue" % (source, lineno))
            current[1].append(raw.rstrip("\r"))
            continue
        if current is not None:
            yield current[0], "".join(current[1])
        current = [lineno, [raw.rstrip("\r")]]
    if current is not None:
        yield current[0], "".join(current[1])


def read_text(path):
    """Return the text of a table file.

    Raises:
        OSError: when it cannot be read.
        TableConfigError: when it is not UTF-8.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TableConfigError("%s: not UTF-8 text: %s" % (path, err)) from None


def file_signature(path):
    """Return what tells that a file changed (inode, size, mtime), or None when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_dev)


_UNSET = object()


def inline_items(name, spec, rules=False):
    """Split an inline table body ``{ a=b, { c = d e } }`` into its items.

    Items are separated by commas or white space; an item in braces keeps
    its spaces (braces removed, inner white space trimmed).  With
    ``rules``, every item must be braced (``regexp:{ {/a/ b}, {/c/ d} }``).

    Raises:
        TableConfigError: for a body not in braces, unbalanced braces or an
            unbraced rule.
    """
    text = name.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise TableConfigError("%s: expected {...} after the table type" % spec)
    body = text[1:-1]
    items, current, depth = [], [], 0
    for char in body + ",":
        if char == "{":
            depth += 1
            if depth == 1:
                current.append(char)
                continue
        elif char == "}":
            if depth == 0:
                raise TableConfigError("%s: unbalanced '}'" % spec)
            depth -= 1
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                items.append("".join(current))
                current = []
            continue
        current.append(char)
    if depth:
        raise TableConfigError("%s: missing '}'" % spec)
    result = []
    for item in items:
        if item.startswith("{"):
            item = item[1:-1].strip() if item.endswith("}") else item[1:].strip()
        elif rules:
            raise TableConfigError("%s: rule %r must be enclosed in {}" % (spec, item))
        result.append(item)
    return result


class FileTable(Table):
    """A table loaded from a file and reloaded when the file changes.

    Subclasses implement :meth:`_load(path)` returning the parsed data
    (kept in ``self._data``) and :meth:`_get`.  ``_watched_path`` is the
    file whose changes trigger a reload (the compiled ``.db`` for ``hash``).

    A table whose file cannot be loaded answers every lookup with
    :class:`TableTemporaryError` naming the reason, until the file is fixed.
    """

    #: True for types whose rules may be given in the name: ``regexp:{ {rule}, {rule} }``.
    inline_ok = False

    def __init__(self, name, context=None):
        super().__init__(name, context)
        self._data = None
        self._error = None
        self._signature = _UNSET
        self._checked = None
        self.inline_text = None
        if self.inline_ok and name.startswith("{"):
            self.path = None
            self.inline_text = "\n".join(inline_items(name, self.spec, rules=True))
        else:
            self.path = self._resolve(name)

    @property
    def source(self):
        """The name used in messages: the file, or the table spec for inline rules."""
        return self.path if self.path is not None else self.spec

    def _source_text(self):
        if self.inline_text is not None:
            return self.inline_text
        return read_text(self.path)

    def _resolve(self, name):
        base = getattr(self.context, "base_directory", None)
        if base and not os.path.isabs(name):
            return os.path.join(base, name)
        return name

    @property
    def _watched_path(self):
        return self.path

    def open(self, strict=False):
        """Load the file now, so that syntax errors stop startup.

        A missing file is only logged unless ``strict``: lookups then fail
        temporarily until it appears, as mail must be deferred, not lost.

        Raises:
            TableConfigError: the file has a syntax error (or, when
                ``strict``, cannot be read).
        """
        self._reload()
        if self._error is not None and (strict or self._broken):
            raise TableConfigError(self._error)
        return self

    def _missing_hint(self):
        return ""

    def _now(self):
        clock = getattr(self.context, "reactor", None)
        return clock.seconds() if clock is not None else None

    def _check(self):
        if self.path is None:
            if self._signature is _UNSET:
                self._reload()
            return
        interval = getattr(self.context, "check_interval", 0)
        now = self._now()
        if interval and now is not None and self._checked is not None and now - self._checked < interval:
            return
        self._checked = now
        if file_signature(self._watched_path) != self._signature:
            self._reload()

    def _reload(self):
        signature = file_signature(self._watched_path) if self.path is not None else None
        try:
            data = self._load(self.path)
        except TableConfigError as err:
            self._error = str(err)
            self._broken = True
        except OSError as err:
            self._error = "%s: cannot open %s: %s%s" % (self.spec, err.filename or self._watched_path,
                                                      err.strerror, self._missing_hint())
            self._broken = False
        else:
            if self._signature is not _UNSET:
                log.info("table {spec}: reloaded after a change", spec=self.spec)
            self._error = None
            self._replace(data)
        if self._error is not None:
            if self._error.startswith(self.spec + ":"):
                log.warn("table {error}", error=self._error)
            else:
                log.warn("table {spec}: {error}", spec=self.spec, error=self._error)
        self._signature = signature

    def _replace(self, data):
        self._data = data

    def _load(self, path):
        raise NotImplementedError

    def lookup_blocking(self, key):
        self._check()
        if self._error is not None:
            raise TableTemporaryError(self._error)
        return super().lookup_blocking(key)
