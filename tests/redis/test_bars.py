"""Bars through Redis: a gateway started late serves the feed's bars, also after Redis restarts."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from ticker_server.app import TickerServer
from ticker_server.backfill import backfill_rng, generate
from ticker_server.bars import BarStore
from ticker_server.market import listings_for
from ticker_server.protocol import BAR_INTERVALS, Bars, decode_server_message
from ticker_server.redis_bars import BARS_EPOCH_KEY

from .conftest import SYMBOLS, TIMEOUT, Cluster, Peer, PeerFactory

Row = tuple[int, int, int, int, int, int, int]


async def fetch(peer: Peer, symbol: str, interval: int) -> list[dict[str, Any]]:
    """All bars a gateway serves for one symbol and interval (newest 5000)."""
    await peer.send(type="bars", symbol=symbol, interval=interval, limit=5000, id=interval)
    bars: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = decode_server_message(await peer.ws.recv())
            if isinstance(message, Bars) and message.id == interval:
                bars += [b.model_dump() for b in message.bars]
                if message.done:
                    return bars


def feed_rows(store: BarStore, symbol: str, interval: int) -> dict[int, Row]:
    series = store.series[symbol][interval]
    rows = {r[0]: tuple(r) for r in series.closed.tolist()}
    if series.forming is not None:
        rows[series.forming[0]] = tuple(series.forming)
    return rows


async def assert_same_bars(
    gateway: TickerServer, feed: TickerServer, make_peer: PeerFactory
) -> int:
    """Every complete bar the gateway serves equals the feed's, and none of the feed's is missing."""
    assert feed.bar_writer is not None
    peer = await make_peer(gateway.url)
    compared = 0
    for symbol in SYMBOLS:
        for interval in BAR_INTERVALS:
            served = await fetch(peer, symbol, interval)
            held = feed_rows(feed.bar_writer.store, symbol, interval)
            complete = [b for b in served if not b["partial"]]
            if not complete:  # an hour bar of a short history may not have closed yet
                assert interval > 60 and len(served) == 1, (symbol, interval)
                continue
            newest = complete[-1]["t"]
            oldest = complete[0]["t"]
            assert [b["t"] for b in complete] == [t for t in sorted(held) if oldest <= t <= newest]
            for bar in complete:
                cents = tuple(round(bar[k] * 100) for k in "ohlc")
                assert (bar["t"], *cents, bar["v"], bar["n"]) == held[bar["t"]], (symbol, interval)
            compared += len(complete)
    return compared


async def wait_for_bars(url: str, epoch: str) -> None:
    """Until the feed's bars are whole in Redis (it polls: Redis offers no event for it)."""
    async with Redis.from_url(url) as redis, asyncio.timeout(TIMEOUT * 2):
        while await redis.get(BARS_EPOCH_KEY) != epoch.encode():  # noqa: ASYNC110 - a key
            await asyncio.sleep(0.05)


async def test_gateway_started_late_serves_the_feeds_bars(
    cluster: Cluster, make_peer: PeerFactory
) -> None:
    """A gateway started after 10 minutes of backfill and some live ticks has every bar."""
    feed = await cluster.feed(backfill=600.0)
    assert feed.bus is not None
    await wait_for_bars(cluster.redis.url, feed.bus.epoch)
    await asyncio.sleep(1.0)  # live bars too, not only the backfill's
    gateway = await cluster.gateway()
    assert await assert_same_bars(gateway, feed, make_peer) > 600
    # And the history's bars equal the aggregation of the history regenerated from the seed.
    assert feed.feed is not None and feed.bar_writer is not None
    start = feed.feed.market.start
    history = generate(
        listings_for(SYMBOLS, 7), tick_rate=50.0, duration=600.0, end=start, rng=backfill_rng(7)
    )
    peer = await make_peer(gateway.url)
    for symbol in SYMBOLS:
        h = history.symbols[symbol]
        for interval in (1, 15, 60, 300):
            expected = BarStore([symbol], retention=10_000.0, intervals=(interval,))
            expected.ingest_arrays(symbol, h.count, h.t_us, h.cents, h.sizes)
            rows = expected.series[symbol][interval].closed.tolist()
            whole = {r[0]: tuple(r) for r in rows if r[0] + interval <= start}
            served = {
                b["t"]: (b["t"], *(round(b[k] * 100) for k in "ohlc"), b["v"], b["n"])
                for b in await fetch(peer, symbol, interval)
                if b["t"] in whole
            }
            assert served == whole, (symbol, interval)


async def test_redis_restart_loses_no_bars(cluster: Cluster, make_peer: PeerFactory) -> None:
    """After Redis is killed and restarted empty, the feed writes its bars again: a running
    gateway and one started afterwards both serve every bar."""
    feed = await cluster.feed(backfill=300.0)
    assert feed.bus is not None and feed.bar_writer is not None
    await wait_for_bars(cluster.redis.url, feed.bus.epoch)
    early = await cluster.gateway()
    await cluster.redis.kill()
    await asyncio.sleep(0.5)  # ticks the running gateway cannot see
    await cluster.redis.start()
    await wait_for_bars(cluster.redis.url, feed.bus.epoch)
    assert feed.bar_writer.republished >= 2
    late = await cluster.gateway()
    assert await assert_same_bars(late, feed, make_peer) > 300
    assert early.bar_reader is not None
    async with asyncio.timeout(TIMEOUT * 2):
        while early.gateway is not None and early.gateway.live_bars.store.gaps:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # restored by the reader's once-a-second pass
    assert await assert_same_bars(early, feed, make_peer) > 300
