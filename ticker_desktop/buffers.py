"""Bounded numpy buffers for ticks and candles (pure: no Qt, no I/O, no clock).

Both buffers keep their newest rows contiguous so a chart can hand a zero-copy
view to pyqtgraph: rows are appended at the end of arrays a quarter larger than
the capacity, and when the end is reached the newest ``capacity`` rows are moved
to the front in one ``memmove``. The move costs about four element copies per
appended row.

The arrays start small and double as they fill, up to the capacity plus a
quarter, so a symbol costs memory for what it holds: 1,024 rows to start (80 KB
of ticks and 57 KB per candle width, about 250 KB a symbol, so 200 symbols take
about 50 MB). Every array is written when it is allocated, so the kernel
commits its pages then; once a buffer has reached its full size it is never
reallocated and RSS stays flat (``np.zeros`` would map pages lazily and RSS
would creep up as rows are first written). Full, a :class:`TickBuffer` of the
default 100,000 rows takes 10 MB (125,000 rows x 10 columns x 8 B) and a
:class:`CandleSeries` of the default 20,000 candles 1.4 MB (25,000 x 7 x 8 B).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ticker_server.protocol import Tick, ts_micros, window_micros

__all__ = [
    "CANDLE_INTERVALS",
    "FIRST_ROOM",
    "CandleSeries",
    "Columns",
    "TickBuffer",
    "exact_intervals",
    "suited_rate",
]

CANDLE_INTERVALS: tuple[float, ...] = (1.0, 5.0, 60.0)
"""The candle widths the dashboard can draw, in seconds (it offers those that are exact)."""

_ZERO = np.zeros(1, dtype=np.intp)

FIRST_ROOM = 1024
"""Rows a buffer starts with (a snapshot of 1,000 ticks fits); it doubles from there."""


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
    """Named, equally long numpy columns holding at most ``capacity`` rows, newest last.

    The arrays start at ``first`` rows and double as rows arrive, up to
    ``capacity`` plus a quarter; from then on they never change size again.
    """

    def __init__(
        self, capacity: int, dtypes: Mapping[str, npt.DTypeLike], first: int = FIRST_ROOM
    ) -> None:
        if capacity < 1 or first < 1:
            raise ValueError("capacity and first room must be at least 1")
        self.capacity = capacity
        self._room = capacity + max(capacity // 4, 1)
        self._dtypes = dict(dtypes)
        self._arrays = self._allocate(min(self._room, first))
        self._start = 0
        self._end = 0
        self.evicted = 0
        """Rows dropped from the front since construction (the absolute index of row 0)."""

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def nbytes(self) -> int:
        """Bytes the backing arrays take now (all of it committed)."""
        return sum(array.nbytes for array in self._arrays.values())

    def _allocate(self, rows: int) -> dict[str, npt.NDArray[Any]]:
        # np.full writes every element, so the pages are committed now, not on first append.
        return {name: np.full(rows, 0, dtype) for name, dtype in self._dtypes.items()}

    def next_row(self) -> int:
        """Reserve the slot of a new last row and return its index into the raw arrays."""
        return self.next_rows(1)

    def next_rows(self, count: int) -> int:
        """Reserve ``count`` new last rows; return the raw index of the first of them.

        The oldest rows beyond the capacity are dropped. ``count`` may not exceed
        the capacity (keep only the newest rows of a longer batch).
        """
        if not 0 < count <= self.capacity:
            raise ValueError("count must be between 1 and the capacity")
        size = len(next(iter(self._arrays.values())))
        if self._end + count > size:
            held = self._end - self._start
            if size < self._room:
                self._grow(min(self._room, max(2 * size, held + count)))
            if self._end + count > len(next(iter(self._arrays.values()))):
                self._compact(count)
        row = self._end
        self._end += count
        over = self._end - self._start - self.capacity
        if over > 0:
            self._start += over
            self.evicted += over
        return row

    def _grow(self, rows: int) -> None:
        arrays = self._allocate(rows)
        kept = self._end - self._start
        for name, array in arrays.items():
            array[:kept] = self._arrays[name][self._start : self._end]
        self._arrays = arrays
        self._start = 0
        self._end = kept

    def _compact(self, count: int) -> None:
        lo = max(self._start, self._end - (self.capacity - count))
        self.evicted += lo - self._start
        kept = self._end - lo
        for array in self._arrays.values():
            array[:kept] = array[lo : self._end]  # numpy buffers overlapping copies
        self._start = 0
        self._end = kept

    def raw(self, name: str) -> npt.NDArray[Any]:
        """The whole backing array of a column, for writing at an index from :meth:`next_row`.

        Take it after that call: a growing buffer gets new arrays there.
        """
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
    def added(self) -> int:
        """Rows appended since construction (the absolute index one past the newest row)."""
        return self._cols.evicted + len(self._cols)

    @property
    def evicted(self) -> int:
        """Rows dropped from the front (the absolute index of row 0)."""
        return self._cols.evicted

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

    def extend(self, rows: Mapping[str, npt.NDArray[Any]]) -> None:
        """Append a batch of rows, one array per column of :data:`TICK_COLUMNS`, in one step.

        The caller has kept only ticks newer than the newest held, in seq order
        (see :meth:`MarketStore.ingest`); of a batch longer than the capacity
        only the newest rows are stored.
        """
        n = len(rows["seq"])
        if not n:
            return
        keep = min(n, self.capacity)
        i = self._cols.next_rows(keep)
        for name in TICK_COLUMNS:
            self._cols.raw(name)[i : i + keep] = rows[name][n - keep :]
        self._last_seq = int(rows["seq"][-1])
        self._last_ts = float(rows["ts"][-1])

    def rebase(self) -> None:
        """Start a new feed epoch: keep the data, accept any seq from now on."""
        self._last_seq = 0

    @property
    def nbytes(self) -> int:
        return self._cols.nbytes

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
