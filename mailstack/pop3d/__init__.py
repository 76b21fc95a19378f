"""pop3d: the POP3 and POP3S server (RFC 1939, 2449, 2595, 5034) on the shared maildir store.

The master.cf program ``pop3d`` (:mod:`mailstack.pop3d.service`) runs the
services ``pop3`` (plain, with STLS) and ``pop3s`` (implicit TLS).
"""
