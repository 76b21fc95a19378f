"""twistd plugin: ``twistd -n mailstack --config DIR`` runs every master.cf service.

No ``__init__.py`` in ``twisted/`` or ``twisted/plugins/``: Twisted finds
this file on ``sys.path`` (see Twisted's "Writing a twistd plugin").
"""

from twisted.application.service import ServiceMaker

mailstack = ServiceMaker(
    "mailstack",
    "mailstack.tap",
    "A complete mail server: SMTP, queue, POP3, IMAP and auth (services from master.cf).",
    "mailstack",
)
