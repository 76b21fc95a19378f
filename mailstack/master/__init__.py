"""The master's process management: worker processes for ``process_min_avail`` and the anvil counter.

- :mod:`.workers`: the master side: starts N-1 worker processes on a
  service's listening sockets, restarts them, stops them with the master.
- :mod:`mailstack.worker`: the worker side (``python -m mailstack.worker``).
- :mod:`.anvil`: per-client connection counts shared by every process of a
  service (Postfix's anvil(8)).
"""
