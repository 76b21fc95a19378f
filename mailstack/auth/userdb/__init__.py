"""User databases: passwd-file, static, sqlite.  See :mod:`mailstack.auth.userdb.registry`."""
