"""Password databases: passwd-file, static, sqlite.  See :mod:`mailstack.auth.passdb.registry`."""
