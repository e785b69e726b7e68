"""End to end: under throttling the dashboard's own client stack builds exactly the full feed's candles.

A real server conflates live ticks for the dashboard's stack (TickerClient, MarketStore and
ClientBridge, wired as MainWindow wires them) at max_rate 1, 4 and the dashboard's default,
while an independent raw WebSocket client takes every tick unthrottled. Every candle that
both hold complete must agree in open, high, low, close, volume and count.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field

import pytest
from PySide6.QtWidgets import QApplication
from websockets.asyncio.client import connect

from ticker_desktop.bridge import ClientBridge
from ticker_desktop.client import TickerClient
from ticker_desktop.main_window import dashboard_options
from ticker_desktop.store import MarketStore
from ticker_server.app import ServerConfig, TickerServer
from ticker_server.protocol import (
    Snapshot,
    Subscribe,
    Subscribed,
    Tick,
    Ticks,
    decode_server_message,
    encode,
    ts_micros,
)

from .conftest import FAST, TIMEOUT, until

pytestmark = pytest.mark.qt_loop

SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA"]
WIDTHS = (1.0, 5.0)
LIVE_SECONDS = 17.0
"""Live data to collect: at least two whole 5 s candles after the first partial one."""
FIELDS = ("open", "high", "low", "close", "volume", "count")

Candle = tuple[float, float, float, float, int, int]
"""open, high, low, close, volume, count."""


@dataclass
class FullFeed:
    """Every tick of the watched symbols, read by a plain WebSocket client with no throttle."""

    ticks: dict[str, list[Tick]] = field(default_factory=lambda: {s: [] for s in SYMBOLS})

    def last_ts(self) -> float:
        return min((t[-1].ts if t else 0.0) for t in self.ticks.values())

    def candles(self, symbol: str, width: float) -> dict[int, Candle]:
        """Candles by start (microseconds), folded here from unmerged ticks, not by CandleSeries."""
        w = round(width * 1_000_000)
        out: dict[int, Candle] = {}
        for t in self.ticks[symbol]:
            assert t.merged is None, "the reference client must get every tick"
            start = ts_micros(t.ts) // w * w
            c = out.get(start)
            if c is None:
                out[start] = (t.price, t.price, t.price, t.price, t.size, 1)
            else:
                o, h, lo, _, v, n = c
                out[start] = (o, max(h, t.price), min(lo, t.price), t.price, v + t.size, n + 1)
        return out


async def read_full_feed(url: str, feed: FullFeed, subscribed: asyncio.Event) -> None:
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.recv()  # hello
        await ws.send(encode(Subscribe(type="subscribe", symbols=SYMBOLS, id=1)).decode())
        async for raw in ws:
            message = decode_server_message(raw)
            if isinstance(message, Ticks):
                for t in message.ticks:
                    feed.ticks[t.symbol].append(t)
            elif isinstance(message, Snapshot):
                feed.ticks[message.symbol].extend(message.ticks)
            elif isinstance(message, Subscribed):
                subscribed.set()


@dataclass
class Stack:
    """The dashboard's client stack, wired as MainWindow wires it."""

    name: str
    client: TickerClient
    store: MarketStore
    bridge: ClientBridge

    @classmethod
    def start(cls, url: str, max_rate: float | None) -> Stack:
        options = FAST if max_rate is None else dataclasses.replace(FAST, max_rate=max_rate)
        client = TickerClient(url, dashboard_options(options))
        store = MarketStore()
        bridge = ClientBridge(client, store)
        bridge.start()
        bridge.watch(SYMBOLS)
        return cls(f"max_rate {max_rate or 'default'}", client, store, bridge)

    def last_ts(self) -> float:
        """Timestamp of the newest tick held, on the symbol that is furthest behind."""
        series = [self.store.get(s) for s in SYMBOLS]
        return min(s.last.ts if s is not None and s.last is not None else 0.0 for s in series)

    def candles(self, symbol: str, width: float) -> dict[int, Candle]:
        series = self.store.get(symbol)
        assert series is not None
        c = series.candles[width]
        cols = [c.column(n).tolist() for n in ("t", *FIELDS)]
        return {ts_micros(row[0]): tuple(row[1:]) for row in zip(*cols, strict=True)}


def complete(candles: dict[int, Candle], width: float, last_ts: float) -> dict[int, Candle]:
    """Drop the first candle (its start may precede the data) and any not yet closed by a later tick.

    Updates arrive in seq order, so once a tick past a candle's end is held, that candle is whole.
    """
    w = round(width * 1_000_000)
    starts = sorted(candles)[1:]
    return {s: candles[s] for s in starts if s + w <= ts_micros(last_ts)}


async def cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def compare(
    name: str, symbol: str, width: float, ours: dict[int, Candle], full: dict[int, Candle]
) -> tuple[int, list[tuple[object, ...]]]:
    """Candles over the range both hold: how many, and those that differ or are missing."""
    common = set(ours) & set(full)
    assert common, (name, symbol, width)
    lo, hi = min(common), max(common)
    starts = sorted(s for s in set(ours) | set(full) if lo <= s <= hi)
    return len(starts), [
        (name, symbol, width, s / 1e6, ours.get(s), full.get(s))
        for s in starts
        if ours.get(s) != full.get(s)
    ]


async def test_throttled_candles_equal_the_full_feeds(qapp: QApplication) -> None:
    """At max_rate 1, 4 and the dashboard's default, every complete 1 s and 5 s candle is exact."""
    # No cap, so the reference client is unthrottled; 50 ticks/s a symbol, so updates merge.
    config = ServerConfig(
        port=0, tick_rate=50.0, seed=7, max_rate=0.0, heartbeat=1.0, symbols=tuple(SYMBOLS)
    )
    mismatches: list[tuple[object, ...]] = []
    compared = 0
    async with contextlib.AsyncExitStack() as cleanup:
        server = TickerServer(config)
        await server.start()
        cleanup.push_async_callback(server.stop)
        feed, subscribed = FullFeed(), asyncio.Event()
        reader = asyncio.get_running_loop().create_task(
            read_full_feed(server.url, feed, subscribed)
        )
        cleanup.push_async_callback(cancelled, reader)
        async with asyncio.timeout(TIMEOUT):
            await subscribed.wait()
        stacks = [Stack.start(server.url, rate) for rate in (1.0, 4.0, None)]
        for stack in stacks:
            cleanup.push_async_callback(stack.bridge.close)
        await until(lambda: all(s.last_ts() > 0 for s in stacks), "every stack's first ticks")
        start = min(s.last_ts() for s in stacks)
        await until(
            lambda: min(s.last_ts() for s in stacks) > start + LIVE_SECONDS,
            f"{LIVE_SECONDS:.0f} s of live data",
            timeout=LIVE_SECONDS + TIMEOUT,
        )
        await cancelled(reader)
        for stack in stacks:
            assert stack.store.conflated > 0, f"{stack.name}: nothing was conflated"
            for symbol in SYMBOLS:
                for width in WIDTHS:
                    ours = complete(stack.candles(symbol, width), width, stack.last_ts())
                    full = complete(feed.candles(symbol, width), width, feed.last_ts())
                    n, wrong = compare(stack.name, symbol, width, ours, full)
                    assert n >= LIVE_SECONDS // width - 2, (stack.name, symbol, width, n)
                    compared += n
                    mismatches += wrong
        granted = {s.name: s.client.granted_rate for s in stacks}
    assert not mismatches, (
        f"{len(mismatches)} of {compared} candles differ or are missing"
        f" (name, symbol, width, start, ours, full feed's; {', '.join(FIELDS)}):\n"
        + "\n".join(map(str, mismatches[:8]))
    )
    assert granted == {"max_rate 1.0": 1.0, "max_rate 4.0": 4.0, "max_rate default": 50.0}
