"""OHLC candles built from ticks, and which candle widths a throttled feed builds exactly (pure).

A candle series stores its rows in :class:`~.columns.Columns`, as the tick buffer
does: the newest rows contiguous, so a chart draws a zero-copy view.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ticker_server.protocol import Tick, ts_micros, window_micros

from .columns import Columns

__all__ = ["CANDLE_COLUMNS", "CANDLE_INTERVALS", "CandleSeries", "exact_intervals", "suited_rate"]

CANDLE_INTERVALS: tuple[float, ...] = (1.0, 5.0, 60.0)
"""The candle widths the dashboard can draw, in seconds (it offers those that are exact)."""


def exact_intervals(
    rate: float | None, intervals: tuple[float, ...] = CANDLE_INTERVALS
) -> tuple[float, ...]:
    """The candle widths that are whole multiples of the window of a granted ``rate``.

    Only those are exact, because an update never covers ticks of two windows.
    Unthrottled (0), every width is. A server that does not say what it granted
    (None) predates aligned windows, so none is exact: all are offered, as before.
    """
    return tuple(i for i in intervals if _is_multiple(i, rate or 0.0))


def suited_rate(
    rates: list[float], wanted: float | None, intervals: tuple[float, ...] = CANDLE_INTERVALS
) -> float | None:
    """The max_rate to ask of a server that grants ``rates``.

    The fastest rate not above ``wanted`` (None: any) whose window divides the
    smallest candle width that some such rate divides, so that the most widths
    are exact; ``wanted`` itself when no offered rate fits.
    """
    allowed = [r for r in rates if r > 0 and (not wanted or r <= wanted * (1 + 1e-9))]
    for interval in sorted(intervals):
        fitting = [r for r in allowed if _is_multiple(interval, r)]
        if fitting:
            return max(fitting)
    return wanted


def _is_multiple(interval: float, rate: float) -> bool:
    window = window_micros(rate)
    return window == 0 or round(interval * 1_000_000) % window == 0


CANDLE_COLUMNS: dict[str, npt.DTypeLike] = {
    "t": np.float64,
    "open": np.float64,
    "high": np.float64,
    "low": np.float64,
    "close": np.float64,
    "volume": np.int64,
    "count": np.int64,
}

_ZERO = np.zeros(1, dtype=np.intp)


class CandleSeries:
    """OHLC candles of a fixed width built from ticks; the newest candle is updated in place.

    A conflated update covers ticks of one clock-aligned window of its rate, and
    carries their first price (``open``), ``high``, ``low``, summed ``size`` and
    count (``merged``). So when the width is a whole multiple of the window (see
    :func:`exact_intervals`) no update straddles a candle boundary, and each
    candle equals the one the unconflated ticks build: open is the first
    update's open, high and low the extremes of the updates', close the last
    price, volume the summed sizes and count the summed ``merged``.
    """

    def __init__(self, interval: float, capacity: int = 20_000) -> None:
        width = round(interval * 1_000_000)
        if width < 1:
            raise ValueError("interval must be at least a microsecond")
        self.interval = interval
        self._width = width
        self._cols = Columns(capacity, CANDLE_COLUMNS)
        self.version = 0
        """Bumped on every change, so a chart knows when to repaint."""

    def __len__(self) -> int:
        return len(self._cols)

    @property
    def capacity(self) -> int:
        return self._cols.capacity

    @property
    def evicted(self) -> int:
        """Candles dropped from the front (the absolute index of row 0)."""
        return self._cols.evicted

    @property
    def nbytes(self) -> int:
        return self._cols.nbytes

    def bucket(self, ts: float) -> float:
        """Start time of the candle that ``ts`` falls in.

        Computed on the microsecond grid, as the server assigns ticks to windows,
        so a tick on a boundary lands in the same candle on both sides.
        """
        return (ts_micros(ts) // self._width) * self._width / 1_000_000

    def add(
        self,
        ts: float,
        price: float,
        size: int,
        high: float | None = None,
        low: float | None = None,
        count: int = 1,
        open: float | None = None,
    ) -> None:
        """Fold one (possibly conflated) update into the candles."""
        first = price if open is None else open
        hi = price if high is None else max(high, price)
        lo = price if low is None else min(low, price)
        cols = self._cols
        start = self.bucket(ts)
        if len(cols) and start <= cols.raw("t")[cols.last_index()]:
            # Same candle (or a clock step back): update the newest candle in place.
            i = cols.last_index()
            h, lw = cols.raw("high"), cols.raw("low")
            h[i] = max(h[i], hi)
            lw[i] = min(lw[i], lo)
            cols.raw("close")[i] = price
            cols.raw("volume")[i] += size
            cols.raw("count")[i] += count
        else:
            i = cols.next_row()
            cols.raw("t")[i] = start
            cols.raw("open")[i] = first
            cols.raw("high")[i] = hi
            cols.raw("low")[i] = lo
            cols.raw("close")[i] = price
            cols.raw("volume")[i] = size
            cols.raw("count")[i] = count
        self.version += 1

    def extend(
        self,
        ts: npt.NDArray[np.float64],
        price: npt.NDArray[np.float64],
        size: npt.NDArray[np.int64],
        high: npt.NDArray[np.float64],
        low: npt.NDArray[np.float64],
        count: npt.NDArray[np.int64],
        open: npt.NDArray[np.float64],
    ) -> None:
        """Fold a batch of updates into the candles at once, as :meth:`add` would one by one.

        Each update's candle start is computed as in :meth:`bucket`; a start not
        after the newest candle's (a clock step back) joins that candle, as in
        :meth:`add`, so the starts are made non-decreasing with a running
        maximum and each run of equal starts becomes one candle.
        """
        n = len(ts)
        if not n:
            return
        starts = (np.rint(ts * 1_000_000).astype(np.int64) // self._width) * self._width / 1e6
        cols = self._cols
        held = len(cols)
        if held:
            starts = np.maximum(starts, cols.raw("t")[cols.last_index()])
        starts = np.maximum.accumulate(starts)
        hi = np.maximum(high, price)
        lo = np.minimum(low, price)
        if starts[0] == starts[-1]:
            firsts = _ZERO
            lasts = np.array([n - 1])
        else:
            change = np.empty(n, dtype=bool)
            change[0] = True
            np.not_equal(starts[1:], starts[:-1], out=change[1:])
            firsts = change.nonzero()[0]
            lasts = np.empty_like(firsts)
            lasts[:-1] = firsts[1:] - 1
            lasts[-1] = n - 1
        c_high = np.maximum.reduceat(hi, firsts)
        c_low = np.minimum.reduceat(lo, firsts)
        c_size = np.add.reduceat(size, firsts)
        c_count = np.add.reduceat(count, firsts)
        c_close = price[lasts]
        c_open = open[firsts]
        c_t = starts[firsts]
        skip = 0
        if held and c_t[0] <= cols.raw("t")[cols.last_index()]:
            i = cols.last_index()
            h, lw = cols.raw("high"), cols.raw("low")
            h[i] = max(h[i], c_high[0])
            lw[i] = min(lw[i], c_low[0])
            cols.raw("close")[i] = c_close[0]
            cols.raw("volume")[i] += c_size[0]
            cols.raw("count")[i] += c_count[0]
            skip = 1
        new = len(firsts) - skip
        if new > 0:
            keep = min(new, cols.capacity)
            lo_ = len(firsts) - keep
            i = cols.next_rows(keep)
            for name, values in (
                ("t", c_t),
                ("open", c_open),
                ("high", c_high),
                ("low", c_low),
                ("close", c_close),
                ("volume", c_size),
                ("count", c_count),
            ):
                cols.raw(name)[i : i + keep] = values[lo_:]
        self.version += 1

    def add_tick(self, tick: Tick) -> None:
        """Fold a protocol tick into the candles."""
        self.add(tick.ts, tick.price, tick.size, tick.high, tick.low, tick.covers, tick.open)

    def column(self, name: str) -> npt.NDArray[Any]:
        """A zero-copy view of one column: t, open, high, low, close, volume or count."""
        return self._cols.column(name)

    def last(self) -> dict[str, float]:
        """The newest candle as a dict of floats (the series must not be empty)."""
        i = self._cols.last_index()
        return {name: float(self._cols.raw(name)[i]) for name in CANDLE_COLUMNS}
