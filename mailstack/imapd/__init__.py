"""imapd: the IMAP4rev1/IMAPS server over the shared maildir store (issue 5).

See :mod:`mailstack.imapd.service` (the master.cf program),
:mod:`mailstack.imapd.server` (the protocol) and
:mod:`mailstack.imapd.commands` (the dispatch table).
"""
