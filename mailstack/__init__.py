"""mailstack: a complete mail server stack (SMTP, queue, POP3, IMAP, auth) on Twisted."""

__version__ = "0.1.0"
