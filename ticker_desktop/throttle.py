"""One log line per reason per interval, however fast the reasons come (pure: injected clock).

The client's edge counts what it rejects and the session the server's errors; both
report through :class:`LogThrottle`, so a flood costs one line per reason per
interval and the totals stay exact. :class:`RateMeter` counts events per second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LogThrottle", "RateMeter", "Report"]


@dataclass(frozen=True, slots=True)
class Report:
    """A line due in the log: ``count`` occurrences of ``reason`` since its last line."""

    reason: str
    count: int
    total: int
    detail: str


@dataclass
class _Reason:
    total: int = 0
    pending: int = 0
    reported_at: float | None = None
    detail: str = ""


class LogThrottle:
    """Counts occurrences per reason and says when a log line is due: at most one per interval.

    The first occurrence of a reason is reported at once; later ones are summed
    into the next report, which :meth:`add` or :meth:`flush` gives once the
    interval since the last has passed. So a flood costs one line per reason per
    interval and nothing is lost from the totals.

    Args:
        interval: seconds between two lines of one reason.
        clock: monotonic time source, injected for tests.
    """

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self._clock = clock
        self._reasons: dict[str, _Reason] = {}

    @property
    def totals(self) -> dict[str, int]:
        """Occurrences per reason since this throttle was made."""
        return {r: s.total for r, s in self._reasons.items()}

    def total(self, quiet: frozenset[str] = frozenset()) -> int:
        """All occurrences, leaving out the reasons in ``quiet``."""
        return sum(s.total for r, s in self._reasons.items() if r not in quiet)

    def add(self, reason: str, detail: str, n: int = 1) -> Report | None:
        """Count ``n`` occurrences; return a report if one is due now."""
        state = self._reasons.setdefault(reason, _Reason())
        state.total += n
        state.pending += n
        state.detail = detail
        return self._due(reason, state, self._clock())

    def flush(self) -> list[Report]:
        """Reports of counts held back whose interval has passed."""
        now = self._clock()
        due = (self._due(r, s, now) for r, s in self._reasons.items() if s.pending)
        return [report for report in due if report is not None]

    def _due(self, reason: str, state: _Reason, now: float) -> Report | None:
        if state.reported_at is not None and now - state.reported_at < self.interval:
            return None
        report = Report(reason, state.pending, state.total, state.detail)
        state.pending = 0
        state.reported_at = now
        return report


class RateMeter:
    """Events per second over a sliding window of short buckets."""

    def __init__(self, window: float = 2.0, buckets: int = 8) -> None:
        self._width = window / buckets
        self._counts = [0] * buckets
        self._ids = [-1] * buckets
        self._window = window

    def add(self, now: float, n: int = 1) -> None:
        """Count ``n`` events at time ``now``."""
        bucket = int(now / self._width)
        slot = bucket % len(self._counts)
        if self._ids[slot] != bucket:
            self._ids[slot] = bucket
            self._counts[slot] = 0
        self._counts[slot] += n

    def rate(self, now: float) -> float:
        """Events per second over the window ending at ``now``."""
        newest = int(now / self._width)
        oldest = newest - len(self._counts) + 1
        total = sum(c for c, b in zip(self._counts, self._ids, strict=True) if b >= oldest)
        return total / self._window
