"""The numbers both sides of protocol v1 agree on: granted rates, their windows, the bar grid.

Plain arithmetic, no models and no I/O: the conflation, the bars and both protocol sides
compute windows and bar starts with these same functions, so they agree to the microsecond.
"""

from __future__ import annotations

__all__ = [
    "BAR_INTERVALS",
    "DEFAULT_BAR_LIMIT",
    "MAX_BAR_LIMIT",
    "RATES",
    "check_interval",
    "grant_rate",
    "ts_micros",
    "window_micros",
]

RATES: tuple[float, ...] = (
    50.0, 25.0, 20.0, 10.0, 5.0, 4.0, 2.0, 1.0,
    1 / 2, 1 / 4, 1 / 5, 1 / 10, 1 / 15, 1 / 20, 1 / 30, 1 / 60,
)  # fmt: skip
"""The update rates a server grants, fastest first: those whose window (1 / rate) divides one
second evenly (below one second) or one minute evenly. Windows are clock-aligned, so a candle
whose width is a whole multiple of the window is built exactly from the updates."""

BAR_INTERVALS: tuple[int, ...] = (1, 5, 15, 60, 300, 900, 3600)
"""The bar widths a server keeps and serves, in seconds (``bar_intervals`` in hello)."""
DEFAULT_BAR_LIMIT = 1000
"""Bars a ``bars`` request returns when it gives no ``limit``."""
MAX_BAR_LIMIT = 5000
"""The largest ``limit`` a ``bars`` request may ask; page back with ``before`` for more."""


def check_interval(interval: int) -> int:
    """``interval`` if it is one of :data:`BAR_INTERVALS`.

    Raises:
        ValueError: naming the supported intervals (pydantic turns it into a field error).
    """
    if interval not in BAR_INTERVALS:
        supported = ", ".join(map(str, BAR_INTERVALS))
        raise ValueError(f"unsupported interval {interval}; supported: {supported}")
    return interval


def window_micros(rate: float) -> int:
    """The window of a granted rate in whole microseconds (0 for unthrottled, rate 0)."""
    return round(1_000_000 / rate) if rate > 0 else 0


def ts_micros(ts: float) -> int:
    """A tick's ``ts`` in whole microseconds, as both sides assign it to a window.

    Ticks go on the wire with six decimals, so this is exact for any ``ts`` that was
    read from the wire or generated on the microsecond grid.
    """
    return round(ts * 1_000_000)


def grant_rate(requested: float | None, cap: float) -> float:
    """The rate a server grants for a requested ``max_rate`` under its cap (0 = no cap).

    The request (or the cap, when the request is 0 or absent) rounds down to the
    nearest supported rate in :data:`RATES`; below the slowest, the slowest. With
    no cap and no request the result is 0: unthrottled.
    """
    want = requested or cap
    if cap > 0:
        want = min(want, cap)
    if want <= 0:
        return 0.0
    for rate in RATES:
        if rate <= want * (1 + 1e-9):
            return rate
    return RATES[-1]
