# -*- test-case-name: tests.queue.test_queue_id -*-
"""Queue ids: unique names for queued messages, across processes and hosts.

A queue id follows a message through every log line, so it is short and
has no characters that maillog tools treat specially.  The shape follows
Postfix's long queue ids (``enable_long_queue_ids``): the arrival time in
seconds and microseconds written in base 52, then a random part::

    4FbXq2 Kd7b  kR8mT2wQ
    seconds usec random

The alphabet is Postfix's: digits and consonants, no vowels (so that no
word appears by accident).  Uniqueness across processes and hosts that
share one queue directory comes from the 45 random bits drawn from the
operating system per id, on top of the microsecond clock: two ids made in
the same microsecond collide with probability 2**-45.  The queue writer
also creates files with ``O_EXCL``, so a collision in ``incoming/`` is
detected and retried instead of overwriting a message.
"""

import os
import re
import time

ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
_BASE = len(ALPHABET)
_RANDOM_DIGITS = 8

QUEUE_ID_RE = re.compile(r"^[%s]{12,24}$" % ALPHABET)


def _encode(value, width):
    digits = []
    for _ in range(width):
        value, digit = divmod(value, _BASE)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def new_queue_id(now=None):
    """Return a new queue id.

    Args:
        now: the time to encode (seconds since the epoch); the current time when None.

    Returns:
        str: 18 characters from :data:`ALPHABET`, sortable by arrival second.
    """
    if now is None:
        now = time.time()
    seconds = int(now)
    micros = int((now - seconds) * 1000000)
    random_part = int.from_bytes(os.urandom(6), "big") % (_BASE ** _RANDOM_DIGITS)
    return _encode(seconds, 6) + _encode(micros, 4) + _encode(random_part, _RANDOM_DIGITS)


def is_queue_id(text):
    """Return True when ``text`` has the shape of a queue id (admin tools check arguments with it)."""
    return bool(QUEUE_ID_RE.match(text or ""))
