# -*- test-case-name: tests.auth.test_userdb -*-
"""What userdb drivers return: a dict of userdb fields, or None for an unknown user.

Fields follow Dovecot's names: ``uid``, ``gid``, ``home``, ``mail``
(``maildir:PATH``), ``quota_rule`` (``*:storage=1G``), and any extra
field.  Drivers raise :class:`~mailstack.auth.passdb.base.PassdbError`
when they cannot answer.  :mod:`mailstack.auth.service` turns the dict
into a :class:`~mailstack.auth.request.UserInfo`, filling ``mail`` from
``mail_location`` and ``home`` from ``mail_home`` when the userdb gives
none.
"""

USERDB_FIELDS = ("uid", "gid", "home", "mail", "quota_rule", "quota_bytes")


def userdb_fields(extra):
    """Return the userdb fields among passdb-style extra fields.

    ``userdb_NAME=value`` gives NAME; well-known userdb names without the
    prefix are taken too (Dovecot makes the prefix optional for a file used
    only as userdb).
    """
    result = {}
    for name, value in extra.items():
        if name.startswith("userdb_"):
            result[name[len("userdb_"):]] = value
        elif name in USERDB_FIELDS:
            result.setdefault(name, value)
    return result
