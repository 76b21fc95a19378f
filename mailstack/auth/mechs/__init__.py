"""SASL mechanisms (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256), server and client sides.

See :mod:`mailstack.auth.mechs.registry` and :mod:`mailstack.auth.mechs.client`.
"""
