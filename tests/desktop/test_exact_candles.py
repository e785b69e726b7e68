"""End to end: under throttling the dashboard's own client stack builds exactly the full feed's candles.

A real server conflates live ticks for the dashboard's stack (TickerClient, MarketStore and
ClientBridge, wired as MainWindow wires them) at max_rate 1, 4 and the dashboard's default,
while an independent raw WebSocket client takes every tick unthrottled. Every candle that
both hold complete must agree in open, high, low, close, volume and count, also when the
stack's gateway restarts under it (behind Redis, so the feed runs on).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication
from websockets.asyncio.client import connect

from ticker_desktop.app import make_bridge
from ticker_desktop.bridge import ClientBridge
from ticker_desktop.client import TickerClient
from ticker_desktop.store import MarketStore, SymbolSeries
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

from ..redis.conftest import RedisProcess, redis_binary
from .conftest import FAST, TIMEOUT, until

pytestmark = pytest.mark.qt_loop

SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA"]
WIDTHS = (1.0, 5.0)
RESTARTS = 10
LIVE_SECONDS = 17.0
"""Live data to collect: at least two whole 5 s candles after the first partial one."""
FIELDS = ("open", "high", "low", "close", "volume", "count")

Candle = tuple[float, float, float, float, int, int]
"""open, high, low, close, volume, count."""


@dataclass
class FullFeed:
    """Every tick of the watched symbols, plain and in seq order, as a raw unthrottled client reads them.

    The server merges even an unthrottled client's ticks when its gateway fell more than
    16 ticks behind (a stalled loop on this busy machine does that), so on a merged
    update the reader drops it and resumes with ``since``, which sends plain ticks.
    """

    ticks: dict[str, list[Tick]] = field(default_factory=lambda: {s: [] for s in SYMBOLS})
    resumes: int = 0
    holes: list[tuple[str, int, int]] = field(default_factory=list)

    def last_ts(self) -> float:
        return min((t[-1].ts if t else 0.0) for t in self.ticks.values())

    def since(self) -> dict[str, int]:
        return {s: t[-1].seq for s, t in self.ticks.items() if t}

    def add(self, tick: Tick) -> bool:
        """Keep a plain tick newer than those held; False for a merged one (resume instead)."""
        held = self.ticks[tick.symbol]
        last = held[-1].seq if held else None
        if last is not None and tick.seq <= last:
            return True
        if tick.merged is not None:
            return False
        if last is not None and tick.seq != last + 1:
            self.holes.append((tick.symbol, last, tick.seq))
        held.append(tick)
        return True

    def candles(self, symbol: str, width: float) -> dict[int, Candle]:
        """Candles by start (microseconds), folded here from plain ticks, not by CandleSeries."""
        w = round(width * 1_000_000)
        out: dict[int, Candle] = {}
        for t in self.ticks[symbol]:
            start = ts_micros(t.ts) // w * w
            c = out.get(start)
            if c is None:
                out[start] = (t.price, t.price, t.price, t.price, t.size, 1)
            else:
                o, h, lo, _, v, n = c
                out[start] = (o, max(h, t.price), min(lo, t.price), t.price, v + t.size, n + 1)
        return out


async def read_full_feed(url: str, feed: FullFeed, subscribed: asyncio.Event) -> None:
    while True:
        async with connect(url, max_size=None, compression=None) as ws:
            await ws.recv()  # hello
            since = feed.since() or None
            request = Subscribe(type="subscribe", symbols=SYMBOLS, since=since, id=1)
            await ws.send(encode(request).decode())
            async for raw in ws:
                message = decode_server_message(raw)
                ticks = message.ticks if isinstance(message, Ticks | Snapshot) else []
                if not all(feed.add(t) for t in ticks):
                    feed.resumes += 1
                    break
                if isinstance(message, Subscribed):
                    subscribed.set()


@dataclass
class Stack:
    """The dashboard's client stack, wired as the app wires it for MainWindow."""

    name: str
    client: TickerClient
    store: MarketStore
    bridge: ClientBridge

    @classmethod
    def start(cls, url: str, max_rate: float | None) -> Stack:
        options = FAST if max_rate is None else dataclasses.replace(FAST, max_rate=max_rate)
        bridge = make_bridge(url, SYMBOLS, options)
        bridge.start()
        return cls(f"max_rate {max_rate or 'default'}", bridge.client, bridge.store, bridge)

    def last_ts(self) -> float:
        """Timestamp of the newest tick held, on the symbol that is furthest behind."""
        series = [self.store.get(s) for s in SYMBOLS]
        return min(s.last.ts if s is not None and s.last is not None else 0.0 for s in series)

    def series(self, symbol: str) -> SymbolSeries:
        series = self.store.get(symbol)
        assert series is not None
        return series

    def candles(self, symbol: str, width: float) -> dict[int, Candle]:
        c = self.series(symbol).candles[width]
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


def assert_exact(stacks: list[Stack], feed: FullFeed, seconds: float) -> None:
    """Every candle both hold complete agrees, and there are about as many as ``seconds`` allow."""
    assert not feed.holes, f"the reference client missed ticks: {feed.holes[:5]}"
    mismatches: list[tuple[object, ...]] = []
    compared = 0
    for stack in stacks:
        assert stack.store.conflated > 0, f"{stack.name}: nothing was conflated"
        for symbol in SYMBOLS:
            for width in WIDTHS:
                ours = complete(stack.candles(symbol, width), width, stack.last_ts())
                full = complete(feed.candles(symbol, width), width, feed.last_ts())
                n, wrong = compare(stack.name, symbol, width, ours, full)
                assert n >= seconds // width - 2, (stack.name, symbol, width, n)
                compared += n
                mismatches += wrong
    assert not mismatches, (
        f"{len(mismatches)} of {compared} candles differ or are missing"
        f" (name, symbol, width, start, ours, full feed's; {', '.join(FIELDS)}):\n"
        + "\n".join(map(str, mismatches[:8]))
    )


async def started(cleanup: contextlib.AsyncExitStack, **settings: Any) -> TickerServer:
    """A real server on 127.0.0.1, stopped when ``cleanup`` closes."""
    server = TickerServer(ServerConfig(**{"port": 0, "heartbeat": 1.0, **settings}))
    await server.start()
    cleanup.push_async_callback(server.stop)
    return server


async def full_feed(
    cleanup: contextlib.AsyncExitStack, url: str
) -> tuple[FullFeed, asyncio.Task[None]]:
    """The reference client, subscribed; its task is cancelled when ``cleanup`` closes."""
    feed, subscribed = FullFeed(), asyncio.Event()
    reader = asyncio.get_running_loop().create_task(read_full_feed(url, feed, subscribed))
    cleanup.push_async_callback(cancelled, reader)
    async with asyncio.timeout(TIMEOUT):
        await subscribed.wait()
    return feed, reader


def start_stacks(
    cleanup: contextlib.AsyncExitStack, url: str, rates: tuple[float | None, ...]
) -> list[Stack]:
    stacks = [Stack.start(url, rate) for rate in rates]
    for stack in stacks:
        cleanup.push_async_callback(stack.bridge.close)
    return stacks


def behind(stacks: list[Stack]) -> float:
    """The newest tick time of the stack (and symbol) furthest behind."""
    return min(s.last_ts() for s in stacks)


async def data_past(stacks: list[Stack], ts: float, timeout: float = TIMEOUT) -> None:
    """Wait until every stack holds ticks stamped after ``ts`` on every symbol."""
    await until(lambda: behind(stacks) > ts, f"every stack's ticks past {ts:.3f}", timeout)


async def test_throttled_candles_equal_the_full_feeds(qapp: QApplication) -> None:
    """At max_rate 1, 4 and the dashboard's default, every complete 1 s and 5 s candle is exact."""
    async with contextlib.AsyncExitStack() as cleanup:
        # No cap, so the reference client is unthrottled; 50 ticks/s a symbol, so updates merge.
        server = await started(
            cleanup, tick_rate=50.0, seed=7, max_rate=0.0, symbols=tuple(SYMBOLS)
        )
        feed, reader = await full_feed(cleanup, server.url)
        stacks = start_stacks(cleanup, server.url, (1.0, 4.0, None))
        await data_past(stacks, 0.0)
        start = behind(stacks)
        await data_past(stacks, start + LIVE_SECONDS, timeout=LIVE_SECONDS + TIMEOUT)
        await cancelled(reader)
        assert_exact(stacks, feed, LIVE_SECONDS)
        granted = {s.name: s.client.granted_rate for s in stacks}
    assert granted == {"max_rate 1.0": 1.0, "max_rate 4.0": 4.0, "max_rate default": 50.0}


async def test_throttled_candles_stay_exact_across_gateway_restarts(
    qapp: QApplication, tmp_path: Path
) -> None:
    """Through 10 restarts of its gateway behind Redis, at max_rate 1 and the default, candles stay exact."""
    async with contextlib.AsyncExitStack() as cleanup:
        redis = RedisProcess(redis_binary(), tmp_path)
        await redis.start()
        cleanup.push_async_callback(redis.stop)
        bus = {"broker": redis.url}
        await started(cleanup, role="feed", tick_rate=50.0, seed=7, symbols=tuple(SYMBOLS), **bus)
        # The reference reads an unthrottled gateway that stays up; the stacks one that restarts.
        steady = await started(cleanup, role="gateway", max_rate=0.0, **bus)
        feed, reader = await full_feed(cleanup, steady.url)
        gateway = await started(cleanup, role="gateway", **bus)
        port = gateway.port
        stacks = start_stacks(cleanup, gateway.url, (1.0, None))
        await data_past(stacks, 0.0)
        start = behind(stacks)
        for n in range(1, RESTARTS + 1):
            # Live data between restarts, so restarts fall inside candles of both widths.
            await data_past(stacks, start + n * LIVE_SECONDS / (RESTARTS + 2))
            await gateway.stop()
            gateway = await started(cleanup, role="gateway", port=port, **bus)
        await data_past(stacks, start + LIVE_SECONDS, timeout=LIVE_SECONDS + TIMEOUT)
        await cancelled(reader)
        assert_exact(stacks, feed, LIVE_SECONDS)
        for stack in stacks:
            assert stack.client.repeats == 0, stack.name
            assert [stack.series(s).missed for s in SYMBOLS] == [0] * len(SYMBOLS), stack.name
            assert len(stack.series(SYMBOLS[0]).gaps) == RESTARTS, stack.name
