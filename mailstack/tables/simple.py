# -*- test-case-name: tests.tables.test_simple -*-
"""Tables without a file: ``static``, ``inline``, ``fail`` and ``unix``.

- ``static:value`` answers ``value`` for every key (``static:{text with
  spaces}`` keeps the spaces), as Postfix's ``dict_static``.
- ``inline:{ key=value, { key = text with spaces } }`` is a small table
  written in the parameter itself (Postfix 3.0 ``dict_inline``).  Keys are
  lower-cased; a repeated key replaces the earlier one (as Postfix); an
  item without ``=`` is an error.
- ``fail:name`` fails every lookup temporarily (Postfix 3.0 ``dict_fail``),
  for tests and for taking a table out of service on purpose.
- ``unix:passwd.byname`` answers a system user's passwd entry
  (``name:passwd:uid:gid:gecos:home:shell``) and ``unix:group.byname`` a
  group (``name:passwd:gid:member,member``).  The name service can be slow
  (LDAP, NIS), so lookups run in the reactor's thread pool.
"""

import grp
import pwd

from mailstack.tables.base import Table, TableConfigError, TableTemporaryError, inline_items


class StaticTable(Table):
    """``static:value``: the same value for every key."""

    type_name = "static"
    fold = False

    def __init__(self, name, context=None):
        super().__init__(name, context)
        text = name.strip()
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1].strip()
        self.value = text

    def _get(self, key):
        return self.value


class InlineTable(Table):
    """``inline:{ key=value, ... }``: a table written in main.cf."""

    type_name = "inline"

    def __init__(self, name, context=None):
        super().__init__(name, context)
        self.entries = {}
        for item in inline_items(name, self.spec):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise TableConfigError("%s: syntax error at %r: need name=value" % (self.spec, item))
            self.entries[key.strip().lower()] = value.strip()

    def _get(self, key):
        return self.entries.get(key)

    def items(self):
        """Return every ``(key, value)`` in key order, for ``postmap -s``."""
        return sorted(self.entries.items())


class FailTable(Table):
    """``fail:name``: every lookup fails temporarily."""

    type_name = "fail"
    fixed = False

    def _get(self, key):
        raise TableTemporaryError("%s: table lookup failed on purpose (fail: table)" % self.spec)


class UnixTable(Table):
    """``unix:passwd.byname`` and ``unix:group.byname``: the system's users and groups."""

    type_name = "unix"
    synchronous = False

    _MAPS = ("passwd.byname", "group.byname")

    def __init__(self, name, context=None):
        super().__init__(name, context)
        if name not in self._MAPS:
            raise TableConfigError("%s: unknown unix table (known: %s)" % (self.spec, ", ".join(self._MAPS)))

    def _get(self, key):
        try:
            if self.name == "passwd.byname":
                entry = pwd.getpwnam(key)
                return "%s:%s:%d:%d:%s:%s:%s" % (entry.pw_name, entry.pw_passwd, entry.pw_uid, entry.pw_gid,
                                                 entry.pw_gecos, entry.pw_dir, entry.pw_shell)
            entry = grp.getgrnam(key)
            return "%s:%s:%d:%s" % (entry.gr_name, entry.gr_passwd, entry.gr_gid, ",".join(entry.gr_mem))
        except KeyError:
            return None
