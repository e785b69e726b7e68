"""Request and authentication limits (pure: time is passed in)."""

from __future__ import annotations

__all__ = ["AuthFailures", "TokenBucket"]


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

    def available(self, now: float) -> float:
        """Tokens there are at ``now``, without spending one."""
        return min(self.burst, self._tokens + max(now - self._stamp, 0.0) * self.rate)

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._tokens = self.available(now)
        self._stamp = max(now, self._stamp)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        return False


class AuthFailures:
    """Slows token guessing: an address may fail ``burst`` times, then once per ``1 / rate`` s.

    Only failures spend from an address's bucket; while it is empty every attempt
    from there is refused unchecked, so a guesser learns nothing faster. At most
    ``max_addresses`` are tracked; past that, those that have refilled are forgotten
    first, then the oldest.
    """

    def __init__(self, rate: float = 0.1, burst: float = 5.0, max_addresses: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def retry_after(self, address: str, now: float) -> float:
        """Seconds before ``address`` may try again (0: now)."""
        bucket = self._buckets.get(address)
        if bucket is None:
            return 0.0
        return max(0.0, (1.0 - bucket.available(now)) / self.rate)

    def failed(self, address: str, now: float) -> None:
        """Record a failed attempt from ``address``."""
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_addresses:
                self._forget(now)
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, now)
        bucket.take(now)

    def _forget(self, now: float) -> None:
        full = [a for a, b in self._buckets.items() if b.available(now) >= self.burst]
        for address in full:
            del self._buckets[address]
        for address in list(self._buckets)[: max(0, len(self._buckets) - self.max_addresses // 2)]:
            del self._buckets[address]
