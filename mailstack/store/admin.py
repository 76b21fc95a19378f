# -*- test-case-name: tests.store.test_admin -*-
"""``mailstack mailbox``: inspect and resynchronise users' maildirs, as doveadm mailbox.

Usage::

    mailstack mailbox list USER
    mailstack mailbox status USER [FOLDER ...]
    mailstack mailbox resync USER

USER is looked up in the configured userdb (as ``mailstack user show``),
which gives the mail location (``mail_location`` by default) and the quota.
``-l LOCATION`` (``maildir:PATH``) names a maildir directly instead, for a
user the userdb does not know.

``list`` prints every folder, ``*`` marking subscribed ones.  ``status``
prints one line per folder (all of them by default)::

    INBOX messages=3 unseen=1 vsize=5120 uidvalidity=1795424284 uidnext=4

followed by the quota (``quota: bytes=... messages=... limit_bytes=...``) when one
applies.  ``resync`` syncs every folder, which numbers messages that other
programs put into the maildir, drops vanished ones from the UID lists, and
recalculates ``maildirsize``.  Exit status 67 (EX_NOUSER) for an unknown
user, 75 (EX_TEMPFAIL) when the userdb cannot be asked.
"""

import sys

from mailstack.config import maincf
from mailstack.store.errors import StoreError
from mailstack.store.store import MailStore

DESCRIPTION = __doc__.split("\n", 2)[2]

EX_NOUSER = 67
EX_TEMPFAIL = 75


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    for name, summary in (("list", "list a user's folders"),
                          ("status", "show message counts, UIDVALIDITY and UIDNEXT of folders"),
                          ("resync", "sync every folder and recalculate the quota")):
        action = sub.add_parser(name, help=summary)
        action.add_argument("user")
        action.add_argument("-l", "--location", help="maildir:PATH to use instead of the userdb's")
        if name == "status":
            action.add_argument("folders", nargs="*", metavar="FOLDER")


def _mailbox(config, args):
    """Return (Mailbox, exit status); the mailbox is None when the status is not 0."""
    store = MailStore(None, config)
    if args.location:
        return store.mailbox(args.user, "", args.location), 0
    from mailstack.admin.user import cli_service, run_sync
    from mailstack.auth.service import AuthTemporaryError
    try:
        info = run_sync(cli_service(config).lookup_user(args.user))
    except AuthTemporaryError as err:
        sys.stderr.write("mailstack: userdb lookup failed: %s\n" % err)
        return None, EX_TEMPFAIL
    if info is None:
        sys.stderr.write("mailstack: userdb lookup: user %s doesn't exist\n" % args.user)
        return None, EX_NOUSER
    rule = "*:storage=%dB" % info.quota_bytes if info.quota_bytes else None
    return store.mailbox(info.user, info.home, info.mail or None, rule), 0


def run(args):
    config = maincf.load(args.config)
    mailbox, status = _mailbox(config, args)
    if mailbox is None:
        return status
    try:
        return _ACTIONS[args.action](mailbox, args)
    except StoreError as err:
        sys.stderr.write("mailstack: %s\n" % err.text)
        return 1


def _list(mailbox, args):
    subscribed = set(mailbox.subscriptions())
    for name in mailbox.list_folders():
        print("%s%s" % (name, " *" if name in subscribed else ""))
    return 0


def _status(mailbox, args):
    mailbox.ensure()
    for name in args.folders or mailbox.list_folders():
        folder = mailbox.folder(name)
        folder.sync()
        st = folder.status()
        print("%s messages=%d unseen=%d vsize=%d uidvalidity=%d uidnext=%d"
              % (name, st.messages, st.unseen, st.vsize, st.uidvalidity, st.uidnext))
    _print_quota(mailbox)
    return 0


def _resync(mailbox, args):
    for name in mailbox.list_folders():
        changes = mailbox.folder(name).sync()
        print("%s added=%d expunged=%d flagged=%d"
              % (name, len(changes.added), len(changes.expunged), len(changes.flagged)))
    if mailbox.quota.active:
        mailbox.quota.recalculate()
    _print_quota(mailbox)
    return 0


def _print_quota(mailbox):
    if not mailbox.quota.active:
        return
    used_bytes, used_count, limit_bytes, limit_count = mailbox.quota.usage()
    print("quota: bytes=%d messages=%d limit_bytes=%s limit_messages=%s"
          % (used_bytes, used_count, limit_bytes or "none", limit_count or "none"))


_ACTIONS = {"list": _list, "status": _status, "resync": _resync}
