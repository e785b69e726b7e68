"""OHLCV bars: every tick aggregated, exactly, at fixed clock-aligned intervals (pure).

A bar of interval ``i`` seconds starting at ``t`` (a multiple of ``i``, Unix seconds)
covers the ticks whose ``ts`` lies in ``[t, t + i)``, judged on the microsecond grid
(:func:`~.protocol.ts_micros`) exactly as clients window ticks. Its open and close are
the first and last tick's price, high and low the extremes, volume the summed sizes
and count the ticks. Seconds without a tick have no bar (as in Polygon's aggregates).

Prices are held as whole cents (int32): every simulated price is on the cent grid, so
``cents / 100`` gives back the tick's own float and bars compare exactly with ticks.
Closed bars live in a numpy ring per (symbol, interval) bounded by a retention; the
bar still forming is kept apart, as plain ints, so a live tick costs a few compares.

No I/O and no clock: a forming bar is complete once a tick at or after its end has been
taken (of any symbol: the feed is one ordered stream), never by a clock, so a gateway
behind Redis does not call a bar complete while its last ticks are still on the way.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from .protocol import BAR_INTERVALS, Tick, ts_micros

__all__ = [
    "BAR_DTYPE",
    "DEFAULT_RETENTION",
    "BarSeries",
    "BarStore",
    "bars_from_ticks",
    "coarsen",
]

BAR_DTYPE = np.dtype(
    [
        ("t", "<i8"),
        ("o", "<i4"),
        ("h", "<i4"),
        ("l", "<i4"),
        ("c", "<i4"),
        ("v", "<i8"),
        ("n", "<i4"),
    ]
)
"""One bar: start (Unix seconds), open/high/low/close in cents, volume, tick count (36 bytes)."""

DEFAULT_RETENTION = 6.5 * 3600.0
"""Seconds of bars kept at every interval: one trading session (23,400 one-second bars)."""

_SLACK = 4  # the ring is 1 + 1/_SLACK times its capacity, so compaction is rare and cheap
_SMALL = 16  # per-symbol batches up to this size take the scalar path
RECENT = 4096
"""Ticks each symbol keeps (seq, µs, cents, size) to replay onto bars restored from elsewhere."""


def bars_from_ticks(
    interval: int,
    t_us: npt.NDArray[np.int64],
    cents: npt.NDArray[np.int64],
    sizes: npt.NDArray[np.int64],
) -> npt.NDArray[np.void]:
    """Aggregate one symbol's ticks (in time order) into bars of ``interval`` seconds.

    Args:
        interval: bar width in seconds.
        t_us: tick times in whole microseconds, non-decreasing.
        cents: tick prices in cents.
        sizes: tick sizes.
    """
    if len(t_us) == 0:
        return np.empty(0, dtype=BAR_DTYPE)
    slot = t_us // (interval * 1_000_000)
    starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
    ends = np.r_[starts[1:], len(slot)] - 1
    out = np.empty(len(starts), dtype=BAR_DTYPE)
    out["t"] = slot[starts] * interval
    out["o"] = cents[starts]
    out["c"] = cents[ends]
    out["h"] = np.maximum.reduceat(cents, starts)
    out["l"] = np.minimum.reduceat(cents, starts)
    out["v"] = np.add.reduceat(sizes, starts)
    out["n"] = np.diff(np.r_[starts, len(slot)])
    return out


def coarsen(interval: int, bars: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
    """Bars of ``interval`` seconds from finer bars (in time order) whose width divides it."""
    if len(bars) == 0:
        return bars
    slot = bars["t"] // interval
    starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
    ends = np.r_[starts[1:], len(slot)] - 1
    out = np.empty(len(starts), dtype=BAR_DTYPE)
    out["t"] = slot[starts] * interval
    out["o"] = bars["o"][starts]
    out["c"] = bars["c"][ends]
    out["h"] = np.maximum.reduceat(bars["h"], starts)
    out["l"] = np.minimum.reduceat(bars["l"], starts)
    out["v"] = np.add.reduceat(bars["v"], starts)
    out["n"] = np.add.reduceat(bars["n"], starts)
    return out


class BarSeries:
    """One symbol's bars at one interval: a ring of closed bars and the forming bar.

    Args:
        interval: bar width in seconds.
        capacity: closed bars kept; older ones are dropped.
    """

    __slots__ = ("_buf", "_head", "_tail", "capacity", "closed_total", "forming", "interval")

    def __init__(self, interval: int, capacity: int) -> None:
        self.interval = interval
        self.capacity = max(1, capacity)
        self._buf = np.zeros(self.capacity + max(1, self.capacity // _SLACK), dtype=BAR_DTYPE)
        self._head = 0  # the oldest kept bar
        self._tail = 0  # one past the newest
        self.forming: list[int] | None = None
        """The newest bar as [t, o, h, l, c, v, n]: complete once the store's watermark
        reaches ``t + interval`` (see :attr:`BarStore.watermark`), else still forming."""
        self.closed_total = 0
        """Bars ever closed here (a counter readers use to spot new ones)."""

    @property
    def closed(self) -> npt.NDArray[np.void]:
        """The kept closed bars, oldest first (a view: copy before keeping it)."""
        return self._buf[self._head : self._tail]

    @property
    def nbytes(self) -> int:
        return int(self._buf.nbytes)

    def add(self, t_us: int, cents: int, size: int) -> None:
        """Take one tick (not older than the last one taken)."""
        t = t_us // (self.interval * 1_000_000) * self.interval
        bar = self.forming
        if bar is not None and bar[0] == t:
            if cents > bar[2]:
                bar[2] = cents
            elif cents < bar[3]:
                bar[3] = cents
            bar[4] = cents
            bar[5] += size
            bar[6] += 1
            return
        if bar is not None:
            self._close(bar)
        self.forming = [t, cents, cents, cents, cents, size, 1]

    def extend(self, bars: npt.NDArray[np.void]) -> None:
        """Take the bars of a batch of ticks (newer than the last one taken), oldest first."""
        if len(bars) == 0:
            return
        bar = self.forming
        if bar is not None:
            first = bars[0]
            if bar[0] == int(first["t"]):
                bar[2] = max(bar[2], int(first["h"]))
                bar[3] = min(bar[3], int(first["l"]))
                bar[4] = int(first["c"])
                bar[5] += int(first["v"])
                bar[6] += int(first["n"])
                bars = bars[1:]
                if len(bars) == 0:
                    return
            self._close(bar)
        self._append(bars[:-1])
        self.forming = [int(x) for x in bars[-1].tolist()]

    def restore(self, closed: npt.NDArray[np.void], forming: Sequence[int] | None) -> None:
        """Replace everything with ``closed`` bars (oldest first) and a forming bar."""
        self._head = self._tail = 0
        self._append(closed)
        self.forming = list(forming) if forming is not None else None

    def _close(self, bar: list[int]) -> None:
        self._append(np.array([tuple(bar)], dtype=BAR_DTYPE))

    def _append(self, bars: npt.NDArray[np.void]) -> None:
        count = len(bars)
        if count == 0:
            return
        self.closed_total += count
        cap = self.capacity
        if count >= cap:
            self._buf[:cap] = bars[count - cap :]
            self._head, self._tail = 0, cap
            return
        if self._tail + count > len(self._buf):
            keep = min(self._tail - self._head, cap - count)
            self._buf[:keep] = self._buf[self._tail - keep : self._tail]
            self._head, self._tail = 0, keep
        self._buf[self._tail : self._tail + count] = bars
        self._tail += count
        if self._tail - self._head > cap:
            self._head = self._tail - cap


class BarStore:
    """Every symbol's bars at every interval, fed with batches of ticks.

    Ticks are taken once: each symbol remembers the last ``seq`` it took, and a
    tick at or below it is ignored, so overlapping sources (a history read, then
    the live stream) never count a tick twice.

    Args:
        symbols: the symbols to keep bars for (others' ticks are ignored).
        retention: seconds of bars kept per interval; one number for all, or a
            mapping from interval to seconds (intervals absent from it get
            :data:`DEFAULT_RETENTION`).
        intervals: the bar widths in seconds.
    """

    def __init__(
        self,
        symbols: Iterable[str],
        retention: float | Mapping[int, float] = DEFAULT_RETENTION,
        intervals: Sequence[int] = BAR_INTERVALS,
    ) -> None:
        self.intervals = tuple(intervals)
        spans = (
            retention
            if isinstance(retention, Mapping)
            else dict.fromkeys(self.intervals, retention)
        )
        self.capacity = {
            i: max(1, math.ceil(spans.get(i, DEFAULT_RETENTION) / i)) for i in self.intervals
        }
        self.series: dict[str, dict[int, BarSeries]] = {
            s: {i: BarSeries(i, self.capacity[i]) for i in self.intervals} for s in symbols
        }
        self.seq: dict[str, int] = dict.fromkeys(self.series, 0)
        """The last seq taken per symbol."""
        self.recent: dict[str, deque[tuple[int, int, int, int]]] = {
            s: deque(maxlen=RECENT) for s in self.series
        }
        """Each symbol's newest ticks as (seq, µs, cents, size), for :meth:`restore`."""
        self.gaps: set[str] = set()
        self.watermark = 0
        """The newest tick time taken (µs). Ticks come in time order across symbols (one
        stream), so a bar that ends at or before it has all its ticks: it is complete."""
        """Symbols whose ticks skipped a seq: their bars miss ticks until restored."""

    @property
    def nbytes(self) -> int:
        """Bytes of numpy storage held (the forming bars add a few hundred bytes)."""
        return sum(s.nbytes for per in self.series.values() for s in per.values())

    def ingest(self, ticks: Sequence[Tick]) -> set[str]:
        """Take a batch of ticks (in seq order per symbol); return the symbols that changed."""
        by_symbol: dict[str, list[tuple[int, int, int, int]]] = {}
        seqs = self.seq
        for tick in ticks:
            symbol = tick.symbol
            last = seqs.get(symbol)
            if last is None or tick.seq <= last:
                continue
            if last and tick.seq != last + 1:
                self.gaps.add(symbol)
            seqs[symbol] = tick.seq
            row = (tick.seq, ts_micros(tick.ts), round(tick.price * 100), tick.size)
            self.recent[symbol].append(row)
            by_symbol.setdefault(symbol, []).append(row)
        for symbol, rows in by_symbol.items():
            self._take(symbol, rows)
            self.watermark = max(self.watermark, rows[-1][1])
        return set(by_symbol)

    def _take(self, symbol: str, rows: list[tuple[int, int, int, int]]) -> None:
        series = self.series[symbol].values()
        if len(rows) <= _SMALL:
            for _, t_us, cents, size in rows:
                for one in series:
                    one.add(t_us, cents, size)
        else:
            columns = np.array(rows, dtype=np.int64)
            self._extend(series, columns[:, 1], columns[:, 2], columns[:, 3])

    def restore(
        self,
        symbol: str,
        closed: Mapping[int, npt.NDArray[np.void]],
        forming: Mapping[int, Sequence[int] | None],
        seq: int,
    ) -> bool:
        """Replace a symbol's bars with ones made elsewhere from its ticks up to ``seq``,
        then replay the ticks after ``seq`` that this store has already taken.

        Returns whether the result is whole: False when ticks between ``seq`` and
        the oldest held here are missing (the symbol then stays in :attr:`gaps`).
        """
        for interval, one in self.series[symbol].items():
            one.restore(closed.get(interval, np.empty(0, BAR_DTYPE)), forming.get(interval))
        replay = [row for row in self.recent[symbol] if row[0] > seq]
        # Whole only if the replayed seqs continue the restored ones without a hole.
        # Seqs only increase, so the replay is whole iff it starts at seq + 1 and has no hole.
        missing = bool(replay) and (
            replay[0][0] != seq + 1 or replay[-1][0] - replay[0][0] != len(replay) - 1
        )
        missing = missing or (not replay and self.seq[symbol] > seq)
        if replay:
            self._take(symbol, replay)
        self.seq[symbol] = max(seq, self.seq[symbol])
        if missing:
            self.gaps.add(symbol)
        else:
            self.gaps.discard(symbol)
        return not missing

    def ingest_arrays(
        self,
        symbol: str,
        last_seq: int,
        t_us: npt.NDArray[np.int64],
        cents: npt.NDArray[np.int64],
        sizes: npt.NDArray[np.int64],
    ) -> None:
        """Take one symbol's ticks as arrays (the backfill), the last of them ``last_seq``.

        The caller guarantees they are newer than anything taken before.
        """
        self._extend(self.series[symbol].values(), t_us, cents, sizes)
        self.seq[symbol] = max(self.seq[symbol], last_seq)
        if len(t_us):
            self.watermark = max(self.watermark, int(t_us[-1]))
        first = last_seq - len(t_us) + 1
        tail = slice(max(len(t_us) - RECENT, 0), None)
        self.recent[symbol].extend(
            zip(
                range(first + (tail.start or 0), last_seq + 1),
                t_us[tail].tolist(),
                cents[tail].tolist(),
                sizes[tail].tolist(),
                strict=True,
            )
        )

    @staticmethod
    def _extend(
        series: Iterable[BarSeries],
        t_us: npt.NDArray[np.int64],
        cents: npt.NDArray[np.int64],
        sizes: npt.NDArray[np.int64],
    ) -> None:
        # Ticks aggregate once, into the finest bars; each wider interval that the previous
        # one divides is built from those bars (a few thousand rows, not a hundred thousand).
        finer: npt.NDArray[np.void] | None = None
        finer_interval = 0
        for one in sorted(series, key=lambda s: s.interval):
            if finer is not None and one.interval % finer_interval == 0:
                bars = coarsen(one.interval, finer)
            else:
                bars = bars_from_ticks(one.interval, t_us, cents, sizes)
            one.extend(bars)
            finer, finer_interval = bars, one.interval
