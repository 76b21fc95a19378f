# -*- test-case-name: tests.store.test_mailbox -*-
"""Exceptions of the mail store.

They carry an SMTP-style reply (code, enhanced status, text) so that local
delivery can turn them into a DSN and IMAP/POP3 into ``NO``/``-ERR`` without
knowing the store's internals.
"""


class StoreError(Exception):
    """Base class of store errors.

    Attributes:
        code: the SMTP reply code (4xx temporary, 5xx permanent).
        dsn: the RFC 3463 enhanced status code.
        text: a human-readable reason.
    """

    code = 451
    dsn = "4.3.0"

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    @property
    def temporary(self):
        """True for a temporary failure (try again later)."""
        return 400 <= self.code < 500


class FolderNotFound(StoreError):
    """The folder does not exist."""

    code = 550
    dsn = "5.2.0"


class FolderExists(StoreError):
    """The folder to create already exists."""

    code = 550
    dsn = "5.2.0"


class BadFolderName(StoreError):
    """The folder name cannot be stored (empty part, ``/``, or a reserved name)."""

    code = 550
    dsn = "5.2.0"


class QuotaExceeded(StoreError):
    """The mailbox is over its quota; ``temporary`` follows ``quota_full_tempfail``."""

    def __init__(self, text, temporary=False):
        super().__init__(text)
        self.code, self.dsn = (452, "4.2.2") if temporary else (552, "5.2.2")
