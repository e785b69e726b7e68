"""Garbage written into Redis by hand: each bad entry is counted and skipped, delivery goes on."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request

import pytest
from redis.asyncio import Redis

from ticker_server.redis_bus import FEED_STREAM, LISTINGS_KEY, RedisBus, tick_stream

from .conftest import SYMBOLS, TIMEOUT, Cluster, PeerFactory, assert_increasing, collect
from .test_faults import wait_for


def forged(symbol: str, seq: int) -> str:
    return json.dumps(
        {"symbol": symbol, "seq": seq, "ts": 1.0, "price": 1.0, "bid": 1.0, "ask": 1.0}
        | {"size": 1, "volume": 1}
    )


async def test_bad_feed_entries_are_skipped_and_counted(
    cluster: Cluster, make_peer: PeerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed, unannounced, non-finite, 2**62 and jumping seqs in the feed stream: all counted, one log line, every symbol keeps ticking."""
    feed = await cluster.feed()
    gateway = await cluster.gateway()
    assert isinstance(gateway.bus, RedisBus)
    peer = await make_peer(gateway.url)
    await peer.send(type="subscribe", symbols=list(SYMBOLS))
    await peer.expect("subscribed")
    before = await collect(peer, 10)
    epoch = feed.bus.epoch if feed.bus is not None else ""
    with caplog.at_level(logging.WARNING, "ticker_server.redis_bus"):
        async with Redis.from_url(cluster.redis.url) as redis:
            for batch in [
                '[{"symbol":"AAPL","seq":"x"}]',
                "not json at all",
                "[" + forged("AAPL", 2**62) + "]",
                "[" + forged("NVDA", 10**9) + "]",
                "[" + forged("EVIL", 1) + "]",
                "[" + forged("MSFT", 2**60).replace('"ts": 1.0', '"ts": 1e999') + "]",
            ]:
                await redis.xadd(FEED_STREAM, {"e": epoch, "t": batch})
        bus = gateway.bus
        await wait_for(lambda: sum(bus.rejected.values()) >= 6, "the gateway to reject all six")
        live = await collect(peer, 60)
    assert bus.rejected == {
        "malformed": 4,
        "unknown_symbol": 1,
        "seq_jump": 1,
        "stale_epoch": 0,
        "listings": 0,
    }
    assert {t.symbol for t in live} == set(SYMBOLS), "every symbol kept ticking"
    assert_increasing(before + live)
    assert max(t.seq for t in live) < 2**20
    lines = [r for r in caplog.records if "rejected a bus entry" in r.getMessage()]
    assert len(lines) == 1, "logged once per period, not once per entry"
    url = gateway.url.replace("ws://", "http://") + "/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=TIMEOUT).read())
    assert b'ticker_bus_rejected_total{reason="malformed"} 4.0' in text
    assert b'ticker_bus_rejected_total{reason="seq_jump"} 1.0' in text


async def test_new_gateway_starts_despite_bad_history(
    cluster: Cluster, make_peer: PeerFactory
) -> None:
    """Garbage, a wrong symbol and a seq far ahead in a symbol's stream: a new gateway starts and serves a clean snapshot and live ticks."""
    await cluster.feed()
    first = await cluster.gateway()
    watcher = await make_peer(first.url)
    await watcher.send(type="subscribe", symbols=["AAPL"])
    await watcher.expect("subscribed")
    await collect(watcher, 20)
    async with Redis.from_url(cluster.redis.url) as redis:
        for text in ["garbage", forged("MSFT", 3), forged("AAPL", 10**9), '{"seq": null}']:
            await redis.xadd(tick_stream("AAPL"), {"t": text})
        await redis.xadd(tick_stream("AAPL"), {"no": "t field"})
    await collect(watcher, 20)  # real ticks land after the forged ones
    late = await cluster.gateway()
    assert isinstance(late.bus, RedisBus)
    assert late.bus.rejected["malformed"] == 3
    assert late.bus.rejected["unknown_symbol"] == 1
    assert late.bus.rejected["seq_jump"] == 1
    peer = await make_peer(late.url)
    await peer.send(type="subscribe", symbols=["AAPL"], snapshot=30)
    await peer.expect("subscribed")
    snapshot = await peer.expect("snapshot")
    seqs = [t.seq for t in snapshot.ticks]
    assert len(seqs) == 30 and seqs == list(range(seqs[0], seqs[0] + 30))
    live = await collect(peer, 10)
    assert_increasing(snapshot.ticks + live)


async def test_invalid_listings_keep_a_gateway_waiting_not_crashing(cluster: Cluster) -> None:
    """Garbage in the listings key: a gateway counts it and waits; once a feed announces, it goes on."""
    async with Redis.from_url(cluster.redis.url) as redis:
        await redis.set("ticker:epoch", "forged")
        await redis.set(LISTINGS_KEY, "[{not json")
    bus = RedisBus(cluster.redis.url)
    await bus.open()
    try:
        waiting = asyncio.ensure_future(bus.listings())
        await wait_for(lambda: bus.rejected["listings"] >= 1, "the listings to be rejected")
        assert not waiting.done()
        await cluster.feed()
        infos = await asyncio.wait_for(waiting, TIMEOUT)
        assert [info.symbol for info in infos] == list(SYMBOLS)
    finally:
        await bus.close()
