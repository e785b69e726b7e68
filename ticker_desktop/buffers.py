"""Preallocated numpy buffers for ticks and candles (pure: no Qt, no I/O, no clock).

Both buffers keep their newest rows contiguous so a chart can hand a zero-copy
view to pyqtgraph: rows are appended at the end of arrays a quarter larger than
the capacity, and when the end is reached the newest ``capacity`` rows are moved
to the front in one ``memmove``. The move costs about four element copies per
appended row.

Memory is fixed at construction: the arrays are written once when created, so
the kernel commits their pages then and RSS does not grow as rows are first
appended (``np.zeros`` would map them lazily). A :class:`TickBuffer` of the
default 100,000 rows takes 10 MB (125,000 rows x 10 columns x 8 B) and a
:class:`CandleSeries` of the default 20,000 candles 1.4 MB (25,000 x 7 x 8 B),
so a dashboard symbol (its ticks and three candle widths) costs about 14 MB,
committed in a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ticker_server.protocol import Tick

__all__ = [
    "CANDLE_INTERVALS",
    "CandleSeries",
    "Columns",
    "TickBuffer",
]

CANDLE_INTERVALS: tuple[float, ...] = (1.0, 5.0, 60.0)
"""The candle widths the dashboard offers, in seconds."""

TICK_COLUMNS: dict[str, npt.DTypeLike] = {
    "seq": np.int64,
    "ts": np.float64,
    "price": np.float64,
    "bid": np.float64,
    "ask": np.float64,
    "size": np.int64,
    "volume": np.int64,
    "merged": np.int64,
    "high": np.float64,
    "low": np.float64,
}

CANDLE_COLUMNS: dict[str, npt.DTypeLike] = {
    "t": np.float64,
    "open": np.float64,
    "high": np.float64,
    "low": np.float64,
    "close": np.float64,
    "volume": np.int64,
    "count": np.int64,
}


class Columns:
    """Named, equally long numpy columns holding at most ``capacity`` rows, newest last."""

    def __init__(self, capacity: int, dtypes: Mapping[str, npt.DTypeLike]) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._room = capacity + max(capacity // 4, 1)
        # np.full writes every element, so the pages are committed now, not on first append.
        self._arrays = {name: np.full(self._room, 0, dtype) for name, dtype in dtypes.items()}
        self._start = 0
        self._end = 0
        self.evicted = 0
        """Rows dropped from the front since construction (the absolute index of row 0)."""

    def __len__(self) -> int:
        return self._end - self._start

    def next_row(self) -> int:
        """Reserve the slot of a new last row and return its index into the raw arrays."""
        if self._end == self._room:
            lo = max(self._start, self._end - (self.capacity - 1))
            self.evicted += lo - self._start
            kept = self._end - lo
            for array in self._arrays.values():
                array[:kept] = array[lo : self._end]  # numpy buffers overlapping copies
            self._start = 0
            self._end = kept
        row = self._end
        self._end += 1
        if self._end - self._start > self.capacity:
            self._start += 1
            self.evicted += 1
        return row

    def raw(self, name: str) -> npt.NDArray[Any]:
        """The whole backing array of a column, for writing at an index from :meth:`next_row`."""
        return self._arrays[name]

    def column(self, name: str) -> npt.NDArray[Any]:
        """A zero-copy view of one column's rows, oldest first (valid until the next append)."""
        return self._arrays[name][self._start : self._end]

    def last_index(self) -> int:
        """Raw index of the newest row (the buffer must not be empty)."""
        return self._end - 1


class TickBuffer:
    """The ticks of one symbol, bounded, in sequence order; ticks that are not newer are dropped.

    Seqs compare only within one feed epoch: after the server's feed restarts,
    :meth:`rebase` lets the new run's seqs (which start again at 1) in.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._cols = Columns(capacity, TICK_COLUMNS)
        self._last_seq = 0
        self._last_ts = -math.inf

    def __len__(self) -> int:
        return len(self._cols)

    @property
    def capacity(self) -> int:
        return self._cols.capacity

    @property
    def last_seq(self) -> int:
        """Seq of the newest tick held (0 when empty)."""
        return self._last_seq

    @property
    def last_ts(self) -> float:
        """Timestamp of the newest tick held (-inf when empty)."""
        return self._last_ts

    def append(self, tick: Tick) -> bool:
        """Store ``tick`` if it is newer than the newest held; return whether it was stored."""
        if tick.seq <= self._last_seq:
            return False
        i = self._cols.next_row()
        raw = self._cols.raw
        raw("seq")[i] = tick.seq
        raw("ts")[i] = tick.ts
        raw("price")[i] = tick.price
        raw("bid")[i] = tick.bid
        raw("ask")[i] = tick.ask
        raw("size")[i] = tick.size
        raw("volume")[i] = tick.volume
        raw("merged")[i] = tick.covers
        raw("high")[i] = tick.price if tick.high is None else tick.high
        raw("low")[i] = tick.price if tick.low is None else tick.low
        self._last_seq = tick.seq
        self._last_ts = tick.ts
        return True

    def rebase(self) -> None:
        """Start a new feed epoch: keep the data, accept any seq from now on."""
        self._last_seq = 0

    def column(self, name: str) -> npt.NDArray[Any]:
        """A zero-copy view of one column (``seq``, ``ts``, ``price``, ...), oldest first."""
        return self._cols.column(name)

    @property
    def ts(self) -> npt.NDArray[np.float64]:
        return self._cols.column("ts")

    @property
    def price(self) -> npt.NDArray[np.float64]:
        return self._cols.column("price")

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """Copies of every column (for export), oldest first."""
        return {name: self._cols.column(name).copy() for name in TICK_COLUMNS}


class CandleSeries:
    """OHLC candles of a fixed width built from ticks; the newest candle is updated in place.

    A conflated tick contributes its ``high``, ``low``, summed ``size`` and the
    number of ticks it covers, so high, low, close, volume and count match what
    the unconflated ticks would have built. The first price of a merged group
    is not sent, so a candle opened by a merged tick opens at the previous
    close clamped into the tick's range (or at its price when there is none).
    """

    def __init__(self, interval: float, capacity: int = 20_000) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self._cols = Columns(capacity, CANDLE_COLUMNS)
        self.version = 0
        """Bumped on every change, so a chart knows when to repaint."""

    def __len__(self) -> int:
        return len(self._cols)

    @property
    def evicted(self) -> int:
        """Candles dropped from the front (the absolute index of row 0)."""
        return self._cols.evicted

    def bucket(self, ts: float) -> float:
        """Start time of the candle that ``ts`` falls in."""
        return math.floor(ts / self.interval) * self.interval

    def add(
        self,
        ts: float,
        price: float,
        size: int,
        high: float | None = None,
        low: float | None = None,
        count: int = 1,
    ) -> None:
        """Fold one (possibly conflated) tick into the candles."""
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
            previous = float(cols.raw("close")[cols.last_index()]) if len(cols) else None
            opening = price if (previous is None or count == 1) else min(max(previous, lo), hi)
            i = cols.next_row()
            cols.raw("t")[i] = start
            cols.raw("open")[i] = opening
            cols.raw("high")[i] = max(hi, opening)
            cols.raw("low")[i] = min(lo, opening)
            cols.raw("close")[i] = price
            cols.raw("volume")[i] = size
            cols.raw("count")[i] = count
        self.version += 1

    def add_tick(self, tick: Tick) -> None:
        """Fold a protocol tick into the candles."""
        self.add(tick.ts, tick.price, tick.size, tick.high, tick.low, tick.covers)

    def column(self, name: str) -> npt.NDArray[Any]:
        """A zero-copy view of one column: t, open, high, low, close, volume or count."""
        return self._cols.column(name)

    def last(self) -> dict[str, float]:
        """The newest candle as a dict of floats (the series must not be empty)."""
        i = self._cols.last_index()
        return {name: float(self._cols.raw(name)[i]) for name in CANDLE_COLUMNS}
