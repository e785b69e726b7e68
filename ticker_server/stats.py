"""The gateway's counters, which /metrics and the benchmarks read (nothing here does I/O)."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

__all__ = ["LATENCY_BUCKETS", "GatewayStats"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds, in seconds, of the send-latency histogram's buckets (Prometheus' ``le``)."""


@dataclass
class GatewayStats:
    """Counters the metrics endpoint and benchmarks read."""

    connections: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    slow_closes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    """Error messages sent to clients, by code."""
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    """Send latency (tick ts to its flush) per bucket of LATENCY_BUCKETS, the last one +Inf."""
    latency_sum: float = 0.0

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def count_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1
