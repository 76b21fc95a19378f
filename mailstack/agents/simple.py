# -*- test-case-name: tests.agents.test_simple -*-
"""The ``error`` and ``discard`` delivery agents (Postfix error(8), discard(8)).

``error``: every recipient fails with the next-hop text as the reason.  A
text that starts with an enhanced status code (``5.1.1 User unknown``)
keeps it; ``4.x.x`` defers instead of bouncing, as Postfix's ``retry``.
``discard``: every recipient is reported delivered and nothing is written
(``status=sent (TEXT)``: the next-hop text, the recipient's domain when the
transport was given without one, as discard(8)).
"""

import re

from mailstack.agents.base import DeliveryStatus

_DSN_RE = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s+(.*)$")


class ErrorAgent:
    """Bounce (or defer) every recipient with the next-hop text."""

    name = "error"

    async def deliver(self, request):
        match = _DSN_RE.match(request.nexthop or "")
        if match:
            dsn, text = match.group(1), match.group(2)
        else:
            dsn, text = "5.0.0", request.nexthop or "delivery failed"
        action = "deferred" if dsn.startswith("4") else "bounced"
        return [DeliveryStatus(r.index, action, dsn, text, "none") for r in request.recipients]


class DiscardAgent:
    """Report every recipient as delivered, writing nothing."""

    name = "discard"

    async def deliver(self, request):
        text = request.nexthop or "discarded"
        return [DeliveryStatus(r.index, "sent", "2.0.0", text, "none") for r in request.recipients]
