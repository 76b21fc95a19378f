"""Password schemes: how a password is stored (``{PLAIN}``, ``{SHA512-CRYPT}``, ``{ARGON2ID}``...).

See :mod:`mailstack.auth.schemes.registry`.
"""
