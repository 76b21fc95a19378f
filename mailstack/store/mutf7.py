# -*- test-case-name: tests.store.test_names -*-
"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3).

IMAP clients send folder names in modified UTF-7, and Dovecot's Maildir++
layout (without the ``UTF-8`` mail_location option) keeps them that way on
disk: ``Entwürfe`` is the directory ``.Entw&APw-rfe``.  The store's public
API takes and returns ordinary Python (Unicode) names; this module converts
at the file-system boundary.

Rules: printable US-ASCII (0x20-0x7e) stands for itself except ``&``, which is
written ``&-``; every other run of characters is UTF-16BE, base64 with ``,``
instead of ``/`` and no padding, between ``&`` and ``-``.
"""

import base64
import re

_RUN = re.compile(r"&([^-]*)-")


def encode(name):
    """Return ``name`` (str) in modified UTF-7 (str)."""
    out = []
    pending = []

    def flush():
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode(text):
    """Return the Unicode name for modified UTF-7 ``text``.

    Raises:
        ValueError: when ``text`` is not valid modified UTF-7.
    """
    def run(match):
        body = match.group(1)
        if not body:
            return "&"
        raw = body.replace(",", "/")
        raw += "=" * (-len(raw) % 4)
        try:
            return base64.b64decode(raw, validate=True).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            raise ValueError("bad modified UTF-7 in %r" % text) from None

    result = _RUN.sub(run, text)
    if "&" in _RUN.sub("", text):
        raise ValueError("unterminated & in %r" % text)
    return result
