"""What the dashboard knows about each watched symbol (pure: injected clock, no Qt, no I/O).

Every received tick lands here as it arrives; the window's repaint timer later
asks which symbols changed (:meth:`MarketStore.take_dirty`) and paints only
those. Nothing here drops a tick except the sequence rule (not newer than held).
Which symbols are held is not the store's to decide: it keeps one series per
symbol of the shared :class:`~.watched.WatchedSymbols` and follows its changes.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ticker_server.protocol import Tick

from .buffers import CANDLE_INTERVALS, CandleSeries, TickBuffer
from .throttle import RateMeter
from .watched import WatchChange, WatchedSymbols, normalise

__all__ = ["DASHBOARD_INTERVALS", "Gap", "MarketStore", "RateMeter", "SymbolSeries"]

DASHBOARD_INTERVALS: tuple[float, ...] = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
"""Candle widths offered (where exact): the server's bar intervals, which history fills. Those
beyond the store's ``intervals`` are made on first use (:meth:`MarketStore.candles`)."""

Clock = Callable[[], float]
MAX_GAPS = 50
BATCH_MIN = 10
"""Fewer ticks of one symbol in a frame than this go in one by one: numpy's fixed cost per
call is then larger than the per-tick scalar writes it saves."""


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch of wall-clock time (epoch seconds) when the connection was down."""

    start: float
    end: float


@dataclass(eq=False)
class SymbolSeries:
    """One symbol's ticks, candles and summary figures."""

    symbol: str
    ticks: TickBuffer
    candles: dict[float, CandleSeries]
    added_at: float
    first_price: float | None = None
    last: Tick | None = None
    direction: int = 0
    """+1 if the last price rose, -1 if it fell, 0 if unchanged or unknown."""
    changed_at: float = -math.inf
    """Monotonic time of the last price change (drives the flash)."""
    updated_at: float | None = None
    """Monotonic time of the last accepted tick."""
    interval: float | None = None
    """Smoothed seconds between ticks (what "longer than expected" is measured against)."""
    missed: int = 0
    """Generated ticks the client never saw (seq holes not covered by ``merged``)."""
    version: int = 0
    updates: RateMeter = field(default_factory=RateMeter)
    gaps: deque[Gap] = field(default_factory=lambda: deque(maxlen=MAX_GAPS))
    """The most recent outages (bounded, so memory stays flat however often it reconnects)."""

    @property
    def change(self) -> float | None:
        if self.last is None or self.first_price is None:
            return None
        return self.last.price - self.first_price

    @property
    def change_pct(self) -> float | None:
        change = self.change
        if change is None or not self.first_price:
            return None
        return 100.0 * change / self.first_price

    def stale_after(self) -> float:
        """Seconds of silence after which this symbol counts as stale."""
        expected = self.interval if self.interval is not None else 1.0
        return max(3.0, 8.0 * expected)


class MarketStore:
    """Per-symbol series plus feed-wide counters; tells the painter what changed.

    Args:
        watched: the symbols to hold a series for (a new, empty set if not given).
    """

    def __init__(
        self,
        capacity: int = 100_000,
        candle_capacity: int = 20_000,
        intervals: tuple[float, ...] = CANDLE_INTERVALS,
        offered: tuple[float, ...] = DASHBOARD_INTERVALS,
        clock: Clock = time.monotonic,
        watched: WatchedSymbols | None = None,
    ) -> None:
        self._capacity = capacity
        self._candle_capacity = candle_capacity
        self._intervals = intervals
        self.intervals = tuple(sorted({*intervals, *offered}))
        """The candle widths a symbol may have: ``intervals`` from the start, the rest on use."""
        self._clock = clock
        self._series: dict[str, SymbolSeries] = {}
        self._dirty: set[str] = set()
        self._down_since: float | None = None
        self.received = RateMeter()
        """Live ticks per second over all symbols."""
        self.conflated = 0
        """Generated ticks the server merged away: the sum of ``merged - 1``."""
        self.accepted = 0
        self.dropped = 0
        """Ticks rejected as not newer than held (duplicates or stale resends)."""
        self.newest_ts = -math.inf
        """Largest tick timestamp accepted (for tick-to-screen latency)."""
        self.watched = watched if watched is not None else WatchedSymbols()
        """The one set of watched symbols; the store holds a series for each."""
        for symbol in self.watched:
            self._hold(symbol)
        self.watched.add_listener(self._on_watched)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._series

    def __len__(self) -> int:
        return len(self._series)

    @property
    def symbols(self) -> list[str]:
        return self.watched.symbols

    def get(self, symbol: str) -> SymbolSeries | None:
        return self._series.get(symbol)

    def add(self, symbol: str) -> SymbolSeries:
        """Watch ``symbol`` (no-op if watched already) and return its series."""
        self.watched.add([symbol])
        return self._series[normalise([symbol])[0]]

    def remove(self, symbol: str) -> None:
        """Stop watching ``symbol``; its data is forgotten."""
        self.watched.remove([symbol])

    def _on_watched(self, change: WatchChange) -> None:
        for symbol in change.added:
            self._hold(symbol)
        for symbol in change.removed:
            self._series.pop(symbol, None)
            self._dirty.discard(symbol)

    def _hold(self, symbol: str) -> None:
        if symbol not in self._series:
            self._series[symbol] = SymbolSeries(
                symbol=symbol,
                ticks=TickBuffer(self._capacity),
                candles={i: CandleSeries(i, self._candle_capacity) for i in self._intervals},
                added_at=self._clock(),
            )
            self._dirty.add(symbol)

    def ingest(self, ticks: Iterable[Tick], live: bool = True) -> int:
        """Store ticks of held symbols; return how many were new. Snapshots pass ``live=False``.

        A frame's ticks are grouped per symbol and each group goes into the
        buffers in one vectorised step (:meth:`TickBuffer.extend`,
        :meth:`CandleSeries.extend`): numpy scalar writes one tick at a time
        cost the GUI thread about 15 us a tick.
        """
        now = self._clock()
        groups: dict[str, list[Tick]] = {}
        for tick in ticks:
            group = groups.get(tick.symbol)
            if group is None:
                groups[tick.symbol] = [tick]
            else:
                group.append(tick)
        accepted = 0
        for symbol, group in groups.items():
            series = self._series.get(symbol)
            if series is None:
                continue
            if len(group) < BATCH_MIN:
                accepted += self._ingest_one_by_one(series, group, now, live)
            else:
                accepted += self._ingest_group(series, group, now, live)
        if accepted:
            self.accepted += accepted
            if live:
                self.received.add(now, accepted)
        return accepted

    def _ingest_one_by_one(
        self, series: SymbolSeries, group: list[Tick], now: float, live: bool
    ) -> int:
        accepted = 0
        for tick in group:
            previous = series.ticks.last_seq
            if not series.ticks.append(tick):
                self.dropped += 1
                continue
            accepted += 1
            if previous and tick.seq - tick.covers > previous:
                series.missed += tick.seq - tick.covers - previous
            self._fold_tick(series, tick, now, live)
        return accepted

    def _fold_tick(self, series: SymbolSeries, tick: Tick, now: float, live: bool) -> None:
        for candles in series.candles.values():
            candles.add_tick(tick)
        if tick.merged:
            self.conflated += tick.merged - 1
        last = series.last
        if last is None:
            series.first_price = tick.price
        elif tick.price != last.price:
            series.direction = 1 if tick.price > last.price else -1
            series.changed_at = now
        if live and series.updated_at is not None:
            gap = now - series.updated_at
            series.interval = gap if series.interval is None else 0.8 * series.interval + 0.2 * gap
        series.last = tick
        series.updated_at = now
        series.version += 1
        if live:
            series.updates.add(now)
        self.newest_ts = max(self.newest_ts, tick.ts)
        self._dirty.add(series.symbol)

    def _ingest_group(self, series: SymbolSeries, group: list[Tick], now: float, live: bool) -> int:
        rows = np.array(
            [
                (
                    t.seq,
                    t.ts,
                    t.price,
                    t.bid,
                    t.ask,
                    t.size,
                    t.volume,
                    t.merged or 1,
                    t.price if t.high is None else t.high,
                    t.price if t.low is None else t.low,
                    t.price if t.open is None else t.open,
                )
                for t in group
            ],
            dtype=np.float64,
        )
        seq = rows[:, 0].astype(np.int64)
        # A tick is kept when newer than every seq before it (held or earlier in the frame).
        before = np.maximum.accumulate(np.concatenate(([series.ticks.last_seq], seq[:-1])))
        keep = seq > before
        kept = int(np.count_nonzero(keep))
        self.dropped += len(group) - kept
        if not kept:
            return 0
        if kept < len(group):
            rows, seq = rows[keep], seq[keep]
            last = group[int(np.flatnonzero(keep)[-1])]
            first = group[int(np.flatnonzero(keep)[0])]
        else:
            last, first = group[-1], group[0]
        merged = rows[:, 7].astype(np.int64)
        previous = np.concatenate(([series.ticks.last_seq], seq[:-1]))
        holes = seq - merged - previous
        series.missed += int(holes[(previous > 0) & (holes > 0)].sum())
        size = rows[:, 5].astype(np.int64)
        series.ticks.extend(
            {
                "seq": seq,
                "ts": rows[:, 1],
                "price": rows[:, 2],
                "bid": rows[:, 3],
                "ask": rows[:, 4],
                "size": size,
                "volume": rows[:, 6].astype(np.int64),
                "merged": merged,
                "high": rows[:, 8],
                "low": rows[:, 9],
            }
        )
        for candles in series.candles.values():
            candles.extend(
                rows[:, 1], rows[:, 2], size, rows[:, 8], rows[:, 9], merged, rows[:, 10]
            )
        self.conflated += int(merged.sum()) - kept
        self._fold(series, first, last, rows[:, 2], float(rows[:, 1].max()), now, live, kept)
        return kept

    def _fold(
        self,
        series: SymbolSeries,
        first: Tick,
        last: Tick,
        prices: npt.NDArray[np.float64],
        newest_ts: float,
        now: float,
        live: bool,
        count: int,
    ) -> None:
        """The summary figures after ``count`` accepted ticks, ``first`` to ``last``."""
        if series.last is None:
            series.first_price = first.price
        else:
            prices = np.concatenate(([series.last.price], prices))
        moves = np.diff(prices)
        moved = np.flatnonzero(moves)
        if len(moved):
            series.direction = 1 if moves[moved[-1]] > 0 else -1
            series.changed_at = now
        if live:
            # As if each tick were folded alone: the first after a gap, the rest at once.
            for _ in range(count):
                if series.updated_at is not None:
                    gap = now - series.updated_at
                    series.interval = (
                        gap if series.interval is None else 0.8 * series.interval + 0.2 * gap
                    )
                series.updated_at = now
            series.updates.add(now, count)
        series.last = last
        series.updated_at = now
        series.version += count
        self.newest_ts = max(self.newest_ts, newest_ts)
        self._dirty.add(series.symbol)

    def take_dirty(self) -> set[str]:
        """Symbols changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def is_stale(self, symbol: str) -> bool:
        """True when ``symbol`` has been silent for longer than its usual rhythm allows."""
        series = self._series.get(symbol)
        if series is None:
            return False
        since = series.updated_at if series.updated_at is not None else series.added_at
        return self._clock() - since > series.stale_after()

    def new_epoch(self) -> None:
        """The server's feed restarted: its seqs start again, so let them in."""
        for series in self._series.values():
            series.ticks.rebase()

    def connection_lost(self, wall_time: float) -> None:
        """Note when the feed went down, to mark the gap once it is back."""
        if self._down_since is None:
            self._down_since = wall_time

    def connection_restored(self, wall_time: float) -> None:
        """Record the outage as a gap on every held symbol."""
        if self._down_since is None:
            return
        gap = Gap(self._down_since, wall_time)
        self._down_since = None
        for series in self._series.values():
            series.gaps.append(gap)
            series.version += 1
            self._dirty.add(series.symbol)

    def candles(self, symbol: str, interval: float) -> CandleSeries | None:
        """``symbol``'s candles of width ``interval``, made empty on first use (bars fill them)."""
        series = self._series.get(symbol)
        if series is None or interval not in self.intervals:
            return None
        candles = series.candles.get(interval)
        if candles is None:
            candles = series.candles[interval] = CandleSeries(interval, self._candle_capacity)
        return candles

    def replace_candles(self, symbol: str, interval: float, candles: CandleSeries) -> None:
        """Hold ``candles`` as ``symbol``'s series of width ``interval`` (history was merged)."""
        series = self._series.get(symbol)
        if series is None or interval not in series.candles:
            return
        series.candles[interval] = candles
        series.version += 1
        self._dirty.add(symbol)
