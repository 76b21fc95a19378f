# -*- test-case-name: tests.auth.test_delay -*-
"""The failure delay: slow down brute force per client address, not honest clients.

Each failed authentication is answered after a delay.  For one address the
delay starts at ``auth_failure_delay`` and doubles with every further
failure, up to ``auth_failure_delay_max``; an address with no failure for
``auth_failure_delay_reset`` starts over.  Other addresses are not
affected, and a success does not reset the count (else an attacker with
one valid account could keep it low).  Time comes from an injected clock.
"""


class FailureDelay:
    """Per-address growing delays.

    Args:
        clock: provides ``seconds()``.
        base: the first delay, in seconds (0 disables delays).
        maximum: the longest delay.
        reset: seconds without failures after which an address starts over.
    """

    _PRUNE_AT = 4096

    def __init__(self, clock, base, maximum, reset):
        self._clock = clock
        self._base = base
        self._maximum = max(maximum, base)
        self._reset = reset
        self._failures = {}  # address -> (count, last failure time)

    def failures(self, address):
        """Return how many recent failures ``address`` has."""
        count, last = self._failures.get(address, (0, 0.0))
        if count and self._clock.seconds() - last >= self._reset:
            return 0
        return count

    def next_delay(self, address):
        """Return the delay the next failure from ``address`` would get."""
        if self._base <= 0:
            return 0.0
        return min(self._base * (2 ** min(self.failures(address), 30)), self._maximum)

    def record_failure(self, address):
        """Count a failure from ``address``; return the delay to apply to it."""
        delay = self.next_delay(address)
        now = self._clock.seconds()
        self._failures[address] = (self.failures(address) + 1, now)
        if len(self._failures) > self._PRUNE_AT:
            self._failures = {a: v for a, v in self._failures.items() if now - v[1] < self._reset}
        return delay
