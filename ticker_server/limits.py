"""Per-connection request limits (pure: time is passed in)."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows ``rate`` requests per second on average and bursts of up to ``burst``.

    Also counts how many requests in a row were refused, so the caller can
    tell a client that briefly bursts from one that keeps hammering.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate", "refused_in_a_row")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now
        self.refused_in_a_row = 0

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        elapsed = max(now - self._stamp, 0.0)
        self._stamp = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        return False
