"""Faults behind the gateways: Redis killed and restarted, a feed restart, a lagging or closing bus."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ticker_server.market import Market, listings_for
from ticker_server.protocol import SymbolInfo, Tick, decode_server_message
from ticker_server.redis_bus import EPOCH_KEY, RedisBus, tick_stream

from .conftest import (
    SYMBOLS,
    TIMEOUT,
    Cluster,
    PeerFactory,
    RedisProcess,
    assert_increasing,
    collect,
)


def market_ticks(count: int) -> tuple[list[SymbolInfo], list[Tick]]:
    """The first ``count`` ticks of a seeded market of SYMBOLS, and its listings."""
    listings = listings_for(SYMBOLS, 3)
    market = Market(listings, tick_rate=100.0, start=0.0, rng=np.random.default_rng(3))
    ticks: list[Tick] = []
    now = 0.0
    while len(ticks) < count:
        now += 0.05
        ticks += market.advance(now)
    infos = [SymbolInfo(symbol=x.symbol, name=x.name, price=x.price) for x in listings]
    return infos, ticks[:count]


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Poll a counter the bus exposes (it has no event for these) until ``predicate()`` holds."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def test_redis_restart_keeps_clients_and_order(
    cluster: Cluster, make_peer: PeerFactory
) -> None:
    """Redis killed and restarted mid-stream: clients stay connected, get feed_unavailable, then ticks resume with strictly increasing seqs."""
    feed = await cluster.feed()
    gateway = await cluster.gateway()
    peer = await make_peer(gateway.url)
    await peer.send(type="subscribe", symbols=["AAPL", "MSFT"])
    await peer.expect("subscribed")
    before = await collect(peer, 20)
    await cluster.redis.kill()
    error = await peer.expect("error")
    assert error.code == "feed_unavailable"
    await cluster.redis.start()
    after = await collect(peer, 40, timeout=TIMEOUT * 2)
    assert_increasing(before + after)
    assert {t.symbol for t in after} == {"AAPL", "MSFT"}
    assert gateway.gateway is not None and gateway.gateway.feed_available
    assert feed.bus is not None and feed.bus.epoch == gateway.gateway.epoch
    async with Redis.from_url(cluster.redis.url) as redis:
        assert await redis.get(EPOCH_KEY) == feed.bus.epoch.encode(), "the feed announced again"


async def test_feed_restart_resets_gateway(cluster: Cluster, make_peer: PeerFactory) -> None:
    """A restarted feed (new epoch, seqs from 1) makes the gateway close clients with 1012; reconnected, they get the new epoch and its ticks."""
    first = await cluster.feed(seed=1)
    gateway = await cluster.gateway()
    assert first.feed is not None and gateway.gateway is not None
    old_epoch = first.feed.epoch
    peer = await make_peer(gateway.url)
    await peer.send(type="subscribe", symbols=["AAPL"])
    await peer.expect("subscribed")
    before = await collect(peer, 40)
    await first.stop()
    second = await cluster.feed(seed=2)
    assert second.feed is not None and second.feed.epoch != old_epoch
    with pytest.raises(ConnectionClosed):
        await collect(peer, 10_000)
    assert peer.ws.close_code == 1012 and peer.ws.close_reason == "feed restarted"
    async with connect(gateway.url) as ws:
        hello = decode_server_message(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert hello is not None and hello.type == "hello"
        assert hello.epoch == second.feed.epoch
    peer = await make_peer(gateway.url)
    await peer.send(type="subscribe", symbols=["AAPL"], snapshot=5)
    await peer.expect("subscribed")
    snapshot = await peer.expect("snapshot")
    live = await collect(peer, 10)
    assert_increasing(snapshot.ticks + live)
    assert live[0].seq < before[-1].seq, "the new run's low seqs are served, not dropped as repeats"


async def test_feed_queue_bounded_while_redis_down(redis_server: RedisProcess) -> None:
    """While Redis is down the feed keeps at most max_pending ticks (dropping the oldest), then flushes the newest and announces again."""
    infos, ticks = market_ticks(5000)
    bus = RedisBus(redis_server.url, history=100, max_pending=500, backoff_cap=0.2)
    await bus.open()
    try:
        await bus.announce(infos, "epoch-1")
        await redis_server.kill()
        for start in range(0, len(ticks), 50):
            bus.publish(ticks[start : start + 50])
            assert bus.pending <= 500
            await asyncio.sleep(0)
        assert bus.dropped >= 4500 and bus.dropped + bus.pending + bus.written == 5000
        await redis_server.start()
        await wait_for(lambda: bus.written + bus.dropped == 5000, "the queue flushed")
        newest = {t.symbol: t.seq for t in ticks}
        async with Redis.from_url(redis_server.url) as redis:
            assert await redis.get(EPOCH_KEY) == b"epoch-1"
            for symbol in SYMBOLS:
                [(_, fields)] = cast(
                    list[tuple[bytes, dict[bytes, bytes]]],
                    await redis.xrevrange(tick_stream(symbol), count=1),
                )
                assert Tick.model_validate_json(fields[b"t"]).seq == newest[symbol]
        await redis_server.kill()
        bus.publish(ticks[:10])
        started = time.perf_counter()
        await bus.close()
        assert time.perf_counter() - started < 1.5, "close is prompt with Redis down"
    finally:
        await bus.close()


async def test_gateway_bus_close_is_prompt_with_redis_down(redis_server: RedisProcess) -> None:
    """A gateway-side bus reconnecting to a dead Redis reports it once and closes promptly."""
    infos, _ = market_ticks(1)
    feed = RedisBus(redis_server.url)
    await feed.open()
    await feed.announce(infos, "epoch-1")
    await feed.close()
    bus = RedisBus(redis_server.url, backoff_cap=0.2)
    await bus.open()
    assert [i.symbol for i in await bus.listings()] == list(SYMBOLS)
    statuses: list[tuple[bool, str]] = []
    down = asyncio.Event()

    def on_status(available: bool, reason: str) -> None:
        statuses.append((available, reason))
        down.set()

    bus.listen(lambda ticks: None, on_status)
    await redis_server.kill()
    await asyncio.wait_for(down.wait(), TIMEOUT)
    started = time.perf_counter()
    await bus.close()
    assert time.perf_counter() - started < 1.5
    assert len(statuses) == 1 and not statuses[0][0] and "Redis unreachable" in statuses[0][1]


async def test_lagging_gateway_skips_ahead(redis_server: RedisProcess) -> None:
    """A gateway too far behind the feed stream skips to the newest ticks instead of replaying the backlog."""
    infos, ticks = market_ticks(600)
    feed = RedisBus(redis_server.url)
    await feed.open()
    await feed.announce(infos, "epoch-1")
    gateway = RedisBus(redis_server.url, max_lag=0.2)
    await gateway.open()
    try:
        await gateway.listings()
        for start in range(0, len(ticks), 3):  # 200 feed entries, one per batch, over > 0.4 s
            feed.publish(ticks[start : start + 3])
            while feed.pending:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            # Spread the entries in time: lag is measured by entry ids, in milliseconds.
            await asyncio.sleep(0.002)
        received: list[Tick] = []
        newest = {t.symbol: t.seq for t in ticks}
        caught_up = asyncio.Event()

        def on_ticks(batch: Sequence[Tick]) -> None:
            received.extend(batch)
            if {t.symbol: t.seq for t in received} == newest:
                caught_up.set()

        gateway.listen(on_ticks, lambda available, reason: None)
        await asyncio.wait_for(caught_up.wait(), TIMEOUT)
        assert gateway.skips == 1
        assert_increasing(received)
        assert len(received) < len(ticks), "the backlog was not replayed tick by tick"
    finally:
        await gateway.close()
        await feed.close()
