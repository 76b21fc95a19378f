# -*- test-case-name: tests.agents.test_virtual -*-
"""The virtual delivery agent (Postfix virtual(8)): mailboxes of ``virtual_mailbox_domains``.

A recipient ``user@domain`` is looked up, first with its full address, then
without its ``recipient_delimiter`` extension:

1. in ``virtual_mailbox_maps`` (the address, then the ``@domain``
   catch-all): the value is a path relative to ``virtual_mailbox_base``; a
   trailing ``/`` means maildir (the only format delivered);
2. in the auth layer's userdb (``AuthService.lookup_user``): its ``mail=``
   location (or ``mail_location``) is the maildir and its quota applies.

A user found in the userdb is remembered for ``virtual_userdb_cache_ttl``
(positive answers only: a user added meanwhile is found at once, a user
removed may still get mail for that long), so that a busy mailbox does not
cost a userdb lookup per message; the SMTP server has just looked the same
user up at ``RCPT TO``.

Unknown recipients bounce with ``5.1.1 unknown user: "address"``; a
table or userdb that cannot answer defers with ``4.3.0``.  Delivery adds
``Return-Path:`` and ``Delivered-To:`` and goes through the store like
local delivery; ``mailbox_size_limit`` caps the message.

Parameters read: ``virtual_mailbox_maps``, ``virtual_mailbox_base``,
``recipient_delimiter``, ``mailbox_size_limit``, ``virtual_userdb_cache_ttl``.
"""

import os
import time

from mailstack.agents.base import DeliveryError, DeliveryStatus
from mailstack.agents.local import delivered_to
from mailstack.rewrite.resolve import split_address

PARAMS = ("virtual_mailbox_maps", "virtual_mailbox_base", "recipient_delimiter", "mailbox_size_limit",
          "virtual_userdb_cache_ttl")

# The most users the userdb cache holds; past it, it starts again empty.
_USER_CACHE_LIMIT = 10000


class VirtualAgent:
    """Deliver to virtual mailboxes.

    Args:
        config: the main.cf configuration.
        mailboxes: :class:`~mailstack.agents.mailbox.StoreMailboxes`.
        maps: the ``virtual_mailbox_maps`` search list, or None.
        users: ``async (address) -> UserInfo or None``, or None.
        clock: what ``seconds()`` come from for the userdb cache (the
            reactor, or a ``task.Clock`` in tests); a monotonic clock when None.
    """

    name = "virtual"

    def __init__(self, config, mailboxes, maps=None, users=None, clock=None):
        self.config = config
        self.mailboxes = mailboxes
        self.maps = maps
        self.users = users
        self.delimiter = config["recipient_delimiter"]
        self._seconds = clock.seconds if clock is not None else time.monotonic
        self._user_ttl = config["virtual_userdb_cache_ttl"]
        self._user_cache = {}       # address -> (expiry, UserInfo)

    async def deliver(self, request):
        content = await request.read_content()
        loops = delivered_to(content)
        statuses = []
        for rcpt in request.recipients:
            try:
                await self._deliver_one(request, rcpt, content, loops)
                statuses.append(DeliveryStatus.sent(rcpt, "delivered to maildir", "virtual"))
            except DeliveryError as err:
                statuses.append(err.status(rcpt, "virtual"))
            except Exception as err:  # table and userdb failures are temporary
                statuses.append(DeliveryStatus.deferred(rcpt, "temporary lookup failure: %s" % err, "virtual"))
        return statuses

    def _candidates(self, address):
        local, domain = split_address(address)
        result = [address.lower()]
        for delim in self.delimiter:
            if delim in local:
                result.append("%s@%s" % (local.split(delim, 1)[0].lower(), domain))
                break
        return result

    async def _find(self, address):
        candidates = self._candidates(address)
        if self.maps is not None:
            for key in candidates + ["@" + split_address(address)[1]]:
                value = await self.maps.lookup(key)
                if value is not None:
                    value = value.strip()
                    if not value.endswith("/"):
                        raise DeliveryError("5.3.0", "unsupported mailbox format %s (only maildir/)" % value)
                    base = self.config["virtual_mailbox_base"]
                    return os.path.join(base, value).rstrip("/"), key, 0, ""
        if self.users is not None:
            for key in candidates:
                info = await self._user(key)
                if info is not None:
                    return info.mail, info.user, info.quota_bytes, info.home
        return None

    async def _user(self, key):
        """The userdb entry of ``key`` (or None), from the cache while it is fresh."""
        if not self._user_ttl:
            return await self.users(key)
        cached = self._user_cache.get(key)
        if cached is not None and cached[0] > self._seconds():
            return cached[1]
        info = await self.users(key)
        if info is not None:
            if len(self._user_cache) >= _USER_CACHE_LIMIT:
                self._user_cache.clear()
            self._user_cache[key] = (self._seconds() + self._user_ttl, info)
        else:
            self._user_cache.pop(key, None)
        return info

    async def _deliver_one(self, request, rcpt, content, loops):
        if rcpt.address.lower() in loops:
            raise DeliveryError("5.4.6", "mail forwarding loop for %s" % rcpt.address)
        found = await self._find(rcpt.address)
        if found is None:
            raise DeliveryError("5.1.1", 'unknown user: "%s"' % rcpt.address.lower())
        path, user, quota_bytes, home = found
        data = (b"Return-Path: <%s>\nDelivered-To: %s\n" % (request.envelope.sender.encode("utf-8"),
                                                            rcpt.address.encode("utf-8")) + content)
        limit = self.config["mailbox_size_limit"]
        if limit and len(data) > limit:
            raise DeliveryError("5.2.2", "cannot update mailbox for user %s. File too large" % user)
        await self.mailboxes.deliver(path, user, data, quota_bytes, home)
