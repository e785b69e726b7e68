"""Bars from a server as numpy columns: checked at the edge, assembled, merged (pure).

A ``bars`` answer may come in several frames (``done`` false until the last); the
session hands each frame's bars to a :class:`BarsAssembly` and gets one
:class:`BarArrays` when the answer is complete. Each bar is judged on its own, as
ticks are (:func:`check_bar`): a bad one costs only itself. :func:`merge_bars`
joins pages of history and live candles into one ascending run without duplicate
start times, preferring for each start what covers more ticks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ticker_server.protocol import Bar, Bars

from .edge import MAX_SEQ, EdgeLimits

__all__ = ["BAR_FIELDS", "BarArrays", "BarsAssembly", "check_bar", "merge_bars"]

BAR_FIELDS = ("t", "open", "high", "low", "close", "volume", "count")
"""The columns of a :class:`BarArrays`, named as the dashboard's candle columns are."""

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BarArrays:
    """Bars of one symbol at one interval, oldest first, one numpy column per field.

    ``partial`` is true when the newest bar was still forming when it was sent.
    """

    symbol: str
    interval: int
    t: F64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: I64
    count: I64
    partial: bool = False

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls, symbol: str, interval: int) -> BarArrays:
        f, i = np.empty(0, np.float64), np.empty(0, np.int64)
        return cls(symbol, interval, f, f, f, f, f, i, i)

    @classmethod
    def from_bars(cls, symbol: str, interval: int, bars: list[Bar]) -> BarArrays:
        rows = np.array([(b.t, b.o, b.h, b.l, b.c) for b in bars], np.float64).reshape(-1, 5)
        counts = np.array([(b.v, b.n) for b in bars], np.int64).reshape(-1, 2)
        partial = bool(bars and bars[-1].partial)
        return cls(
            symbol,
            interval,
            t=rows[:, 0].copy(),
            open=rows[:, 1].copy(),
            high=rows[:, 2].copy(),
            low=rows[:, 3].copy(),
            close=rows[:, 4].copy(),
            volume=counts[:, 0].copy(),
            count=counts[:, 1].copy(),
            partial=partial,
        )

    def columns(self) -> dict[str, npt.NDArray[np.generic]]:
        return {name: getattr(self, name) for name in BAR_FIELDS}

    def select(self, keep: npt.NDArray[np.bool_] | slice) -> BarArrays:
        """The bars where ``keep`` holds (the partial flag goes with the newest bar)."""
        cols = {name: getattr(self, name)[keep] for name in BAR_FIELDS}
        t = cols["t"]
        partial = self.partial and len(t) > 0 and t[-1] == self.t[-1]
        return BarArrays(self.symbol, self.interval, **cols, partial=bool(partial))


def check_bar(bar: Bar, interval: int, now: float, limits: EdgeLimits) -> tuple[str, str] | None:
    """Judge one bar on its own, as :func:`~.edge.check_tick` judges a tick.

    Returns:
        None if it is believable, else ``(reason, detail)``.
    """
    where = f"bar t={bar.t}"
    if not all(math.isfinite(v) for v in (bar.o, bar.h, bar.l, bar.c)):
        return "not_finite", f"{where}: a price is NaN or infinite"
    if not (0 < bar.l <= min(bar.o, bar.c) and max(bar.o, bar.c) <= bar.h <= limits.max_price):
        return "absurd_value", f"{where}: prices o={bar.o:g} h={bar.h:g} l={bar.l:g} c={bar.c:g}"
    if not (0 <= bar.v <= MAX_SEQ and 0 < bar.n <= MAX_SEQ):
        return "absurd_value", f"{where}: volume {bar.v} or count {bar.n}"
    if bar.t % interval:
        return "bar_misaligned", f"{where}: not a multiple of {interval} s"
    if bar.t > now + limits.max_future:
        return "ts_future", f"{where}: {bar.t - now:.0f} s ahead of our clock"
    return None


@dataclass
class BarsAssembly:
    """The frames of one ``bars`` answer so far; judges each bar as it comes.

    Args:
        symbol: the symbol asked for; frames of another are refused.
        interval: the interval asked for.
    """

    symbol: str
    interval: int
    bars: list[Bar] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    _partial_seen: bool = False

    def add(self, frame: Bars, now: float, limits: EdgeLimits) -> bool:
        """Take one frame's good bars; returns True when the answer is complete."""
        if frame.symbol != self.symbol or frame.interval != self.interval:
            what = f"bars of {frame.symbol}/{frame.interval}, asked {self.symbol}/{self.interval}"
            self.rejected.append(("wrong_symbol", what[:120]))
            return frame.done
        for bar in frame.bars:
            wrong = check_bar(bar, self.interval, now, limits)
            if wrong is None and self.bars and bar.t <= self.bars[-1].t:
                wrong = "bar_order", f"bar t={bar.t} after t={self.bars[-1].t}"
            if wrong is None and self._partial_seen:
                wrong = "bar_order", f"bar t={bar.t} after the forming bar"
            if wrong is not None:
                self.rejected.append(wrong)
                continue
            self._partial_seen = bool(bar.partial)
            self.bars.append(bar)
        return frame.done

    def result(self) -> BarArrays:
        return BarArrays.from_bars(self.symbol, self.interval, self.bars)


def merge_bars(held: BarArrays, page: BarArrays) -> BarArrays:
    """One ascending run of ``held`` and ``page``: every start once, no bar lost.

    Where both have a bar at one start, the one covering more ticks (``count``)
    wins, ``held`` on a tie: a live candle the client saw only part of (its first,
    or one around an outage) loses to the server's whole bar, and a bar that
    kept forming after the server answered keeps its newer ticks. Bars whose
    start the other side lacks are all kept, so pages may come in any order and
    overlap.
    """
    if not len(page):
        return held
    if not len(held):
        return page
    t = np.concatenate((held.t, page.t))
    counts = np.concatenate((held.count, page.count))
    side = np.concatenate((np.zeros(len(held), np.int8), np.ones(len(page), np.int8)))
    order = np.lexsort((side, -counts, t))  # by start, then more ticks, then held first
    first = np.ones(len(t), bool)
    first[1:] = t[order][1:] != t[order][:-1]
    pick = order[first]
    cols = {
        name: np.concatenate((getattr(held, name), getattr(page, name)))[pick]
        for name in BAR_FIELDS
    }
    newest = held if held.t[-1] >= page.t[-1] else page
    partial = newest.partial and bool(cols["t"][-1] == newest.t[-1])
    return BarArrays(held.symbol, held.interval, **cols, partial=partial)
