# -*- test-case-name: tests.tables.test_sql -*-
"""``sqlite:/path/file.cf``: lookups in an SQLite database, as Postfix's sqlite_table(5).

The configuration file holds ``name = value`` lines (main.cf syntax)::

    dbpath = /var/lib/mailstack/aliases.sqlite
    query = SELECT goto FROM alias WHERE address = '%s'
    result_format = %s
    domain = example.com, example.net
    expansion_limit = 0

``query`` expansions (values quoted for SQL by doubling ``'``):

- ``%%``: a percent sign;
- ``%s``: the whole key;
- ``%u``: the local part of a ``user@domain`` key, else the whole key
  (the query is not run when the local part is empty);
- ``%d``: the domain of a ``user@domain`` key (no query for keys without one);
- ``%1`` ... ``%9``: the domain's labels from the right (``%1`` is ``com`` in
  ``user@mail.example.com``); no query when there are not that many;
- ``%S``, ``%U``, ``%D``: the same as lower case.

``result_format`` formats each result row's first column: ``%s`` the
value, ``%u``/``%d`` its local part/domain, ``%S``/``%U``/``%D`` the key's,
``%1``-``%9`` the key's domain labels.  Several rows are joined with
commas.  NULL and empty values are skipped; no rows is "not found".
``domain`` restricts lookups to ``user@domain`` keys with a non-empty local
part in those domains.  ``expansion_limit`` (0: none) bounds the number
of rows; more is a temporary error.  The legacy form ``table``,
``select_field``, ``where_field``, ``additional_conditions`` builds the
query ``SELECT select_field FROM table WHERE where_field = '%s'
additional_conditions``.

Keys are lower-cased.  Queries run in the reactor's thread pool, each
worker thread with its own read-only connection; any SQLite error is a
:class:`~mailstack.tables.base.TableTemporaryError`.
"""

import os
import re
import sqlite3
import threading
import urllib.parse

from mailstack.tables.base import Table, TableConfigError, TableTemporaryError, logical_lines, read_text

_KNOWN = ("dbpath", "query", "result_format", "domain", "expansion_limit",
          "table", "select_field", "where_field", "additional_conditions")
_DIRECTIVE = re.compile(r"%(.)", re.S)


def _quote(text):
    return text.replace("'", "''")


def _split(key):
    """Return (local part, domain or None) of a key."""
    local, at, domain = key.rpartition("@")
    if not at:
        return key, None
    return local, domain


class _Suppressed(Exception):
    """The key cannot fill the template: no query, "not found"."""


def expand(template, key, value=None, quote=None):
    """Expand ``template`` for ``key`` (query mode) or for ``value`` (result mode).

    Raises:
        _Suppressed: when the key lacks what the template needs.
    """
    quote = quote or (lambda text: text)
    key_local, key_domain = _split(key)
    target = key if value is None else value
    local, domain = _split(target)

    def labels(source_domain, number):
        parts = source_domain.split(".") if source_domain else []
        if number > len(parts):
            raise _Suppressed()
        return parts[-number]

    def replace(match):
        code = match.group(1)
        if code == "%":
            return "%"
        if value is not None and code in "SUD":
            subject_local, subject_domain, subject = key_local, key_domain, key
        else:
            subject_local, subject_domain, subject = local, domain, target
        code = code.lower()
        if code == "s":
            return quote(subject)
        if code == "u":
            if subject_domain is not None and not subject_local:
                raise _Suppressed()
            return quote(subject_local)
        if code == "d":
            if subject_domain is None:
                raise _Suppressed()
            return quote(subject_domain)
        if code.isdigit() and code != "0":
            return quote(labels(key_domain, int(code)))
        raise _Suppressed()
    return _DIRECTIVE.sub(replace, template)


def _check_template(template, where):
    for match in _DIRECTIVE.finditer(template):
        if match.group(1) not in "%sudSUD123456789":
            raise TableConfigError("%s: invalid %%%s in %r" % (where, match.group(1), template))
    if template.endswith("%") and not template.endswith("%%"):
        raise TableConfigError("%s: trailing %% in %r" % (where, template))


class SQLiteTable(Table):
    """``sqlite:/file.cf``: one query per lookup, in the reactor's thread pool."""

    type_name = "sqlite"
    synchronous = False

    def __init__(self, name, context=None):
        super().__init__(name, context)
        base = getattr(context, "base_directory", None)
        self.path = os.path.join(base, name) if base and not os.path.isabs(name) else name
        try:
            settings = self._read(read_text(self.path))
        except OSError as err:
            raise TableConfigError("%s: cannot open %s: %s" % (self.spec, self.path, err.strerror)) from None
        if not settings.get("dbpath"):
            raise TableConfigError("%s: dbpath is not set" % self.path)
        self.dbpath = settings["dbpath"]
        if "query" in settings:
            self.query = settings["query"]
        elif settings.get("table") and settings.get("select_field") and settings.get("where_field"):
            self.query = "SELECT %s FROM %s WHERE %s = '%%s' %s" % (
                settings["select_field"], settings["table"], settings["where_field"],
                settings.get("additional_conditions", "").replace("%", "%%"))
        else:
            raise TableConfigError("%s: query is not set" % self.path)
        self.result_format = settings.get("result_format", "%s")
        _check_template(self.query, "%s: query" % self.path)
        _check_template(self.result_format, "%s: result_format" % self.path)
        self.domains = {d.lower() for d in re.split(r"[\s,]+", settings.get("domain", "")) if d}
        limit = settings.get("expansion_limit", "0")
        if not limit.isdigit():
            raise TableConfigError("%s: bad expansion_limit %r" % (self.path, limit))
        self.expansion_limit = int(limit)
        self._local = threading.local()
        self._connections = []
        self._lock = threading.Lock()

    def _read(self, text):
        settings = {}
        for lineno, line in logical_lines(text, self.path):
            name, eq, value = line.partition("=")
            name = name.strip()
            if not eq:
                raise TableConfigError("%s:%d: expected name = value" % (self.path, lineno))
            if name not in _KNOWN:
                raise TableConfigError("%s:%d: unknown parameter %s (known: %s)"
                                       % (self.path, lineno, name, ", ".join(_KNOWN)))
            settings[name] = " ".join(value.split())
        return settings

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = "file:%s?mode=ro" % urllib.parse.quote(os.path.abspath(self.dbpath))
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=5.0)
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def _get(self, key):
        if self.domains:
            local, domain = _split(key)
            if domain is None or not local or domain not in self.domains:
                return None
        try:
            query = expand(self.query, key, quote=_quote)
        except _Suppressed:
            return None
        try:
            rows = self._connection().execute(query).fetchall()
        except sqlite3.Error as err:
            raise TableTemporaryError("%s: query failed: %s" % (self.spec, err)) from err
        results = []
        for row in rows:
            value = row[0] if row else None
            if value is None or value == "":
                continue
            try:
                results.append(expand(self.result_format, key, value=str(value)))
            except _Suppressed:
                continue
            if self.expansion_limit and len(results) > self.expansion_limit:
                raise TableTemporaryError("%s: expansion limit %d exceeded for key %s"
                                          % (self.spec, self.expansion_limit, key))
        return ",".join(results) if results else None

    def close(self):
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections = []
        self._local = threading.local()
