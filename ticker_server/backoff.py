"""The one reconnect and restart backoff, shared by the server and the desktop client (pure).

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): the n-th delay is
uniform in [0, min(cap, base * 2**n)], which spreads a crowd of clients that lost the same
server best. A caller that must never retry at once passes a ``floor``.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Exponential backoff with full jitter: delay n is uniform in [0, min(cap, base * 2**n)].

    Args:
        base: ceiling of the first delay, in seconds.
        cap: largest ceiling.
        rng: random source, injected for tests.
    """

    def __init__(
        self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
    ) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        """Delays handed out since the last reset."""
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The largest jittered delay the next call can return."""
        return min(self.cap, self.base * 2.0 ** min(self.attempt, 64))

    def next_delay(self, floor: float = 0.0) -> float:
        """The next delay: ``floor`` (a minimum the caller needs) plus the jittered one."""
        delay = floor + self._rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
