"""A wall clock that never steps, for everything the server schedules and stamps."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["steady_wall_clock"]


def steady_wall_clock(
    wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic
) -> Callable[[], float]:
    """Seconds since the epoch as read once at the start, then advanced by the monotonic clock.

    The feed sleeps until each tick is due and the gateway times heartbeats,
    slow-consumer grace and request buckets on this clock, so a step of the system
    clock (NTP, an operator) neither stalls the feed nor closes blocked clients.
    Tick timestamps come from it too: they stay on the wall time of the start and
    ignore later steps until the process restarts.
    """
    origin = wall() - monotonic()

    def now() -> float:
        return origin + monotonic()

    return now
