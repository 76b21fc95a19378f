# -*- test-case-name: tests.store -*-
"""The shared maildir store: the one API through which delivery, POP3 and IMAP touch mail.

Maildir++ folders with Dovecot's own file formats (``dovecot-uidlist`` v3,
``dovecot-keywords``, ``subscriptions``, Maildir++ ``maildirsize``), so that
mailstack and Dovecot can take over each other's maildirs.  See
``docs/store.md`` for the API and which calls block.

Modules: :mod:`.store` (MailStore, process-wide), :mod:`.mailbox` (a
user's maildir, folders, subscriptions), :mod:`.folder` (messages, flags,
operations, listeners), :mod:`.sync` (reading the disk, numbering
messages), :mod:`.maildir` (file names, safe delivery), :mod:`.uidlist`,
:mod:`.keywords`, :mod:`.quota`, :mod:`.subscriptions`, :mod:`.dotlock`,
:mod:`.mutf7`, :mod:`.notify` (listeners, inotify/polling).
"""
