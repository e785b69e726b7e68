"""BarHistory against a real store: pages join the live candles, forming bars are asked again,
paging stops at the cap or when the server has nothing older (the fetch is a recorded server)."""

from __future__ import annotations

import asyncio

import numpy as np

from ticker_desktop.bars import BarArrays
from ticker_desktop.history import BarHistory
from ticker_desktop.store import MarketStore
from ticker_server.protocol import Tick

from .conftest import TIMEOUT

T0 = 1_764_000_000.0 // 60 * 60


def server_bars(n: int, partial_last: bool = False) -> BarArrays:
    """``n`` one-minute bars ending at T0, 10 ticks each (the last still forming if asked)."""
    t = T0 - 60.0 * np.arange(n)[::-1]
    close = 100.0 + np.arange(n) % 7
    counts = np.full(n, 10, np.int64)
    return BarArrays("AAPL", 60, t, close, close + 1, close - 1, close, counts * 5, counts,
                     partial=partial_last)  # fmt: skip


class Server:
    """Answers bars requests from a fixed history, as the real one pages: newest before ``before``."""

    def __init__(self, bars: BarArrays) -> None:
        self.bars = bars
        self.asked: list[tuple[int, int | None]] = []

    async def fetch(self, symbol: str, interval: int, limit: int, before: int | None) -> BarArrays:
        self.asked.append((limit, before))
        keep = self.bars.t < (before if before is not None else np.inf)
        index = np.flatnonzero(keep)[-limit:]
        return self.bars.select(index)


def live_store(ticks_from: float, count: int) -> MarketStore:
    store = MarketStore(candle_capacity=200)
    store.add("AAPL")
    ticks = [
        Tick(symbol="AAPL", seq=i + 1, ts=ticks_from + i, price=100.0, bid=99.0, ask=101.0,
             size=5, volume=5 * (i + 1))
        for i in range(count)
    ]  # fmt: skip
    store.ingest(ticks)
    return store


async def loaded(history: BarHistory, count: int) -> None:
    """Wait until ``count`` pages have been merged (bounded by the tests' timeout)."""
    async with asyncio.timeout(TIMEOUT):
        await history.wait_loaded(count)


async def test_newest_page_fills_in_front_of_the_live_candles_without_a_seam() -> None:
    """History before the first live candle comes in front; the live candles stay, one per start."""
    store = live_store(T0 + 60, 90)  # live candles at T0+60 and T0+120
    server = Server(server_bars(100))
    history = BarHistory(store, server.fetch)
    assert history.want("AAPL", 60.0)
    await loaded(history, 1)
    candles = store.candles("AAPL", 60.0)
    assert candles is not None
    t = candles.column("t")
    assert np.array_equal(t, np.concatenate((server.bars.t, [T0 + 60, T0 + 120])))
    assert candles.column("count")[-2:].tolist() == [60, 30], "the live candles kept"
    assert server.asked == [(1000, None)]


async def test_the_forming_bar_is_left_out_then_asked_again_once_closed() -> None:
    """The page's forming bar is not grafted; once it has closed the newest page is asked again."""
    store = live_store(T0 + 50, 5)  # the client saw 5 of the forming bar's ticks
    server = Server(server_bars(30, partial_last=True))
    history = BarHistory(store, server.fetch, wall=lambda: T0 + 60, recheck_after=0.0)
    history.want("AAPL", 60.0)
    await loaded(history, 1)
    candles = store.candles("AAPL", 60.0)
    assert candles is not None and candles.column("count")[-1] == 5, "live kept, page's left out"
    server.bars = server_bars(30)  # the bar closed with its 10 ticks
    await loaded(history, 2)
    candles = store.candles("AAPL", 60.0)
    assert candles is not None and candles.column("count")[-1] == 10, "the whole bar, asked again"
    assert len(server.asked) == 2


async def test_paging_back_stops_when_nothing_older_exists() -> None:
    """Pages before the oldest bar load in front until the server runs out; then no more asks."""
    store = live_store(T0 + 60, 10)
    server = Server(server_bars(120))
    history = BarHistory(store, server.fetch, page=50)
    history.want("AAPL", 60.0)
    await loaded(history, 1)
    for loads in (2, 3):
        candles = store.candles("AAPL", 60.0)
        assert candles is not None
        assert history.want("AAPL", 60.0, before=float(candles.column("t")[0]))
        assert not history.want("AAPL", 60.0, before=float(candles.column("t")[0])), "one at a time"
        await loaded(history, loads)
    candles = store.candles("AAPL", 60.0)
    assert candles is not None and len(candles) == 121
    assert np.all(np.diff(candles.column("t")) == 60)
    assert history.exhausted("AAPL", 60.0)
    assert not history.want("AAPL", 60.0, before=float(candles.column("t")[0]))


async def test_paging_back_stops_at_the_memory_cap() -> None:
    """A series holds at most its capacity of candles: paging stops there, the newest kept."""
    store = live_store(T0 + 60, 10)  # capacity 200
    server = Server(server_bars(1000))
    history = BarHistory(store, server.fetch, page=150)
    history.want("AAPL", 60.0)
    await loaded(history, 1)
    candles = store.candles("AAPL", 60.0)
    assert candles is not None
    history.want("AAPL", 60.0, before=float(candles.column("t")[0]))
    await loaded(history, 2)
    candles = store.candles("AAPL", 60.0)
    assert candles is not None and len(candles) == 200
    assert candles.column("t")[-1] == T0 + 60, "the newest kept"
    assert history.exhausted("AAPL", 60.0)
    await history.close()
