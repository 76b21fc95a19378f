"""Delivery agents: local, virtual, error, discard (and their registry).

An agent takes a :class:`~mailstack.agents.base.DeliveryRequest` (one
message, one destination, some recipients) and returns one
:class:`~mailstack.agents.base.DeliveryStatus` per recipient: sent,
deferred or bounced.  Agents never touch the queue file: the queue manager
marks recipients done, logs, defers and asks ``mailstack.bounce`` for
notices.
"""
