"""Bar history for the charts: loaded from the server, joined to the live candles (Qt-free).

A chart that opens, changes its candle width or is panned left past its oldest
candle asks :class:`BarHistory` for bars (:meth:`~BarHistory.want`); the request
runs as a background task on the running loop, so the event loop never waits on
it, and its page is merged into the symbol's :class:`~.buffers.CandleSeries` of
that width: :func:`~.bars.merge_bars` keeps, at each start time, the candle that
covers more ticks, so a history bar fills what the client never saw (before it
connected, during an outage) and a live candle built from every tick is kept.
The merged run becomes a new series (the old object is replaced in the store),
which tells every chart, volume and indicator that reads it to redraw and
recompute in full. Live ticks then fold into its newest candle as before.

Memory is bounded: a series holds at most its ``capacity`` candles (the store's
``candle_capacity``, 20,000 by default, 1.4 MB per symbol and width), the newest
kept; paging back stops there (:meth:`~BarHistory.exhausted`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from .bars import BarArrays, merge_bars
from .buffers import CandleSeries
from .store import MarketStore

__all__ = ["PAGE", "BarHistory", "FetchBars", "candles_as_bars", "candles_from_bars"]

log = logging.getLogger("ticker_desktop.history")

RECHECK_AFTER = 1.0
"""Seconds after a bar's end to ask for it again (the server closes it on its next tick)."""
PAGE = 1000
"""Bars asked for per request (the server's default limit; a session of 1-minute bars is 390)."""

FetchBars = Callable[[str, int, int, int | None], Awaitable[BarArrays]]
"""``(symbol, interval, limit, before) -> bars``: :meth:`.client.TickerClient.bars`."""


def candles_as_bars(symbol: str, candles: CandleSeries) -> BarArrays:
    """A copy of ``candles`` as bars (the forming candle counted as partial)."""
    cols = {name: candles.column(name).copy() for name in _CANDLE}
    return BarArrays(symbol, int(candles.interval), **cols, partial=len(candles) > 0)


def candles_from_bars(bars: BarArrays, capacity: int) -> CandleSeries:
    """A new candle series holding ``bars`` (the newest ``capacity`` of them)."""
    series = CandleSeries(float(bars.interval), capacity)
    # Each bar is one update of its whole candle: open, high, low, close, volume, count.
    series.extend(bars.t, bars.close, bars.volume, bars.high, bars.low, bars.count, bars.open)
    return series


_CANDLE = ("t", "open", "high", "low", "close", "volume", "count")


@dataclass
class _Held:
    oldest_asked: float = math.inf
    """The ``before`` of the oldest page asked for (nothing older is loading)."""
    exhausted: bool = False
    """The server had nothing older, or the series is at its capacity."""


class BarHistory:
    """Loads bars into the store's candle series in the background, one request at a time per key.

    Args:
        store: whose candle series are filled.
        fetch: asks the server for bars (the client's ``bars``).
        page: bars per request.
        timeout: seconds a request may take.
        wall: the wall clock, to know when a forming bar has closed.
        recheck_after: seconds after a bar's end to ask for it again.
    """

    def __init__(
        self,
        store: MarketStore,
        fetch: FetchBars,
        page: int = PAGE,
        timeout: float = 10.0,
        wall: Callable[[], float] = time.time,
        recheck_after: float = RECHECK_AFTER,
    ) -> None:
        self.store = store
        self.timeout = timeout
        self.wall = wall
        self.recheck_after = recheck_after
        self.fetch = fetch
        self.page = page
        self.loads = 0
        """Pages merged so far (tests and the probe await their count)."""
        self._held: dict[tuple[str, int], _Held] = {}
        self._tasks: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._rechecks: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self._merged: asyncio.Event = asyncio.Event()

    def loading(self, symbol: str, interval: float) -> bool:
        return (symbol, int(interval)) in self._tasks

    def exhausted(self, symbol: str, interval: float) -> bool:
        """No older bars to load: the server has none, or the series is full."""
        held = self._held.get((symbol, int(interval)))
        return held is not None and held.exhausted

    def want(self, symbol: str, interval: float, before: float | None = None) -> bool:
        """Load the newest page (``before`` None) or the page before ``before``, unless one is
        loading or nothing older exists; returns True if a load started.

        Needs a running event loop; the load is a task that this object owns.
        """
        if interval < 1 or interval != int(interval) or self.store.get(symbol) is None:
            return False
        key = (symbol, int(interval))
        held = self._held.setdefault(key, _Held())
        if key in self._tasks or (
            before is not None and (held.exhausted or before >= held.oldest_asked)
        ):
            return False
        if before is not None:
            held.oldest_asked = before
        task = asyncio.get_running_loop().create_task(self._load(key, before))
        self._tasks[key] = task
        return True

    def forget(self, symbol: str) -> None:
        """A symbol no longer charted: its paging state goes (its loads finish harmlessly)."""
        for key in [k for k in self._held if k[0] == symbol]:
            del self._held[key]

    def refill(self) -> None:
        """On (re)connecting: load the newest page of every key asked before, which fills the
        candles of an outage (or loads what was asked while not yet connected)."""
        for symbol, interval in list(self._held):
            self.want(symbol, interval)

    async def wait_loaded(self, count: int) -> None:
        """Return once ``count`` pages have been merged in all."""
        while self.loads < count:
            self._merged.clear()
            await self._merged.wait()

    async def close(self) -> None:
        """Cancel the loads in flight and wait for them to end."""
        for handle in self._rechecks.values():
            handle.cancel()
        self._rechecks.clear()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _load(self, key: tuple[str, int], before: float | None) -> None:
        try:
            await self._fetch_and_merge(key, before)
        finally:  # before anyone woken by the merge runs, so they may ask again at once
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]

    async def _fetch_and_merge(self, key: tuple[str, int], before: float | None) -> None:
        symbol, interval = key
        try:
            bound = None if before is None else int(before)
            async with asyncio.timeout(self.timeout):
                page = await self.fetch(symbol, interval, self.page, bound)
        except (ConnectionError, OSError) as exc:  # TimeoutError is an OSError
            log.info("bars of %s/%d not loaded: %s", symbol, interval, exc)
            if before is not None:
                self._held[key].oldest_asked = math.inf  # may be asked again once connected
            return
        except Exception as exc:  # a server error (RequestFailed): no history for this key
            log.warning("bars of %s/%d refused: %s", symbol, interval, exc)
            self._held.setdefault(key, _Held()).exhausted = True
            return
        self.merge(page, older=before is not None)

    def merge(self, page: BarArrays, older: bool = False) -> CandleSeries | None:
        """Join ``page`` to the held candles of its symbol and width; returns the new series.

        ``older``: the page was asked with ``before``, so a short one means nothing older exists.
        The page's forming bar is left out: grafting it would count twice the ticks the
        server had folded into it but not yet sent. If the live candle there lacks some of
        its ticks, the newest page is asked again once that bar has closed.
        """
        key = (page.symbol, page.interval)
        held = self._held.setdefault(key, _Held())
        current = self.store.candles(page.symbol, float(page.interval))
        if current is None:
            self._count()
            return None
        if older and len(page) < self.page:
            held.exhausted = True
        if page.partial:
            t, n = float(page.t[-1]), int(page.count[-1])
            page = page.select(slice(0, len(page) - 1))
            live_t = current.column("t")
            i = int(np.searchsorted(live_t, t))
            seen = int(current.column("count")[i]) if i < len(live_t) and live_t[i] == t else 0
            if seen < n:
                self._recheck(key, t + page.interval)
        if not len(page):
            self._count()
            return current
        joined = merge_bars(candles_as_bars(page.symbol, current), page)
        if len(joined) >= current.capacity:
            held.exhausted = True
        candles = candles_from_bars(joined, current.capacity)
        if not _same(candles, current):
            self.store.replace_candles(page.symbol, float(page.interval), candles)
        self._count()
        return candles

    def _recheck(self, key: tuple[str, int], closes: float) -> None:
        """Ask for the newest page again just after ``closes`` (wall time), if a loop runs."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        old = self._rechecks.pop(key, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, closes - self.wall()) + self.recheck_after
        self._rechecks[key] = loop.call_later(delay, self.want, *key)

    def _count(self) -> None:
        self.loads += 1
        self._merged.set()


def _same(a: CandleSeries, b: CandleSeries) -> bool:
    return all(np.array_equal(a.column(n), b.column(n)) for n in _CANDLE)
