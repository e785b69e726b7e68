"""Subscribers waiting for their next window boundary, one bucket per boundary (pure)."""

from __future__ import annotations

import heapq

from .subscriber import Subscriber, SymbolState

__all__ = ["Entry", "TimerWheel"]

Entry = tuple[Subscriber, str, SymbolState]
"""A subscriber waiting on one of its symbols, and its state of that symbol."""


class TimerWheel:
    """Entries due at window boundaries (integer microseconds), popped in time order (pure).

    Every subscriber of a window waits for the same boundaries, so each boundary
    is one heap entry and one bucket, whatever the number of subscribers.
    """

    def __init__(self) -> None:
        self._slots: dict[int, dict[tuple[Subscriber, str], Entry]] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        return sum(len(v) for v in self._slots.values())

    def schedule(self, due: int, entry: Entry) -> None:
        """Due at microsecond time ``due``."""
        bucket = self._slots.get(due)
        if bucket is None:
            self._slots[due] = bucket = {}
            heapq.heappush(self._heap, due)
        bucket[entry[0], entry[1]] = entry

    def cancel(self, due: int, sub: Subscriber, symbol: str) -> None:
        """Drop ``sub``'s entry for ``symbol`` at ``due``, if any (a subscriber that left)."""
        bucket = self._slots.get(due)
        if bucket is not None:
            bucket.pop((sub, symbol), None)

    def next_time(self) -> float | None:
        """Seconds of the earliest boundary with entries, or None."""
        return self._heap[0] / 1_000_000 if self._heap else None

    def pop_due(self, now: int) -> list[Entry]:
        """Every entry due at or before microsecond time ``now``."""
        due: list[Entry] = []
        while self._heap and self._heap[0] <= now:
            due.extend(self._slots.pop(heapq.heappop(self._heap)).values())
        return due
