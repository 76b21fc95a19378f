# -*- test-case-name: tests.auth.test_schemes -*-
"""CRAM-MD5 password scheme: the HMAC-MD5 context state, as Dovecot stores it.

Dovecot's ``{CRAM-MD5}`` value is not a digest of the password: it is the
intermediate MD5 state after one compression of ``key XOR opad`` and of
``key XOR ipad`` (the *outer* and *inner* HMAC contexts), each state four
32-bit words written little-endian, the whole 32 bytes hex-encoded
(Dovecot ``hmac_md5_get_cram_context``; RFC 2195 §2 suggests storing
exactly this).  With it the server can compute ``HMAC-MD5(password,
challenge)`` without knowing the password.

Python's :mod:`hashlib` does not expose MD5's internal state, so this module
carries the MD5 compression function (RFC 1321 §3.4) to build and to resume
those contexts.
"""

import hmac
import math
import struct

_MASK = 0xFFFFFFFF
_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_SHIFTS = [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4
_K = [int(abs(math.sin(i + 1)) * 2 ** 32) & _MASK for i in range(64)]

RAW_LENGTH = 32


def _compress(state, block):
    """One MD5 compression of a 64-byte ``block`` into ``state`` (RFC 1321 §3.4)."""
    a, b, c, d = state
    words = struct.unpack("<16I", block)
    for i in range(64):
        if i < 16:
            f, g = (b & c) | (~b & d), i
        elif i < 32:
            f, g = (d & b) | (~d & c), (5 * i + 1) % 16
        elif i < 48:
            f, g = b ^ c ^ d, (3 * i + 5) % 16
        else:
            f, g = c ^ (b | ~d), (7 * i) % 16
        f = (f + a + _K[i] + words[g]) & _MASK
        shift = _SHIFTS[i]
        a, d, c = d, c, b
        b = (b + (((f << shift) | (f >> (32 - shift))) & _MASK)) & _MASK
    return tuple((x + y) & _MASK for x, y in zip(state, (a, b, c, d)))


def _finish(state, data, already):
    """Finish an MD5 whose first ``already`` bytes (a multiple of 64) gave ``state``."""
    total = already + len(data)
    data = data + b"\x80" + b"\0" * ((55 - total) % 64) + struct.pack("<Q", (total * 8) & 0xFFFFFFFFFFFFFFFF)
    for offset in range(0, len(data), 64):
        state = _compress(state, data[offset:offset + 64])
    return struct.pack("<4I", *state)


def _pads(password):
    import hashlib
    key = password if len(password) <= 64 else hashlib.md5(password).digest()
    key = key.ljust(64, b"\0")
    return bytes(k ^ 0x36 for k in key), bytes(k ^ 0x5C for k in key)


def generate(password):
    """Return the 32-byte CRAM-MD5 context (outer state, then inner state) for ``password`` (bytes)."""
    ipad, opad = _pads(password)
    return struct.pack("<4I", *_compress(_IV, opad)) + struct.pack("<4I", *_compress(_IV, ipad))


def hmac_from_context(context, message):
    """Return ``HMAC-MD5(password, message)`` computed from a stored 32-byte context.

    Raises:
        ValueError: when ``context`` is not 32 bytes.
    """
    if len(context) != RAW_LENGTH:
        raise ValueError("CRAM-MD5 context must be %d bytes, not %d" % (RAW_LENGTH, len(context)))
    outer = struct.unpack("<4I", context[:16])
    inner = struct.unpack("<4I", context[16:])
    return _finish(outer, _finish(inner, message, 64), 64)


def verify(password, raw):
    """Return True when ``raw`` is the CRAM-MD5 context of ``password``."""
    return hmac.compare_digest(generate(password), raw)
