"""One feed, several gateways, one Redis: the same market everywhere, snapshots on every gateway."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from .conftest import Cluster, PeerFactory, assert_increasing, collect


async def test_two_gateways_serve_identical_ticks(cluster: Cluster, make_peer: PeerFactory) -> None:
    """Clients on two gateways see the same ticks (seq, price, ts, quote, volume) in the same order."""
    await cluster.feed()
    peers = []
    for _ in range(2):
        gateway = await cluster.gateway()
        peer = await make_peer(gateway.url)
        await peer.send(type="subscribe", symbols=["AAPL", "MSFT"])
        await peer.expect("subscribed")
        peers.append(peer)
    streams = await asyncio.gather(*(collect(peer, 80) for peer in peers))
    for stream in streams:
        assert_increasing(stream)
        assert {t.symbol for t in stream} == {"AAPL", "MSFT"}
    seen = [{(t.symbol, t.seq): t for t in stream} for stream in streams]
    common = set(seen[0]) & set(seen[1])
    assert len(common) >= 40
    for key in common:
        a, b = seen[0][key], seen[1][key]
        assert (a.ts, a.price, a.bid, a.ask, a.volume) == (b.ts, b.price, b.bid, b.ask, b.volume)


async def test_late_gateway_serves_snapshots(cluster: Cluster, make_peer: PeerFactory) -> None:
    """A gateway started after the feed has the recent history: snapshots, prices and live ticks after them."""
    await cluster.feed()
    first = await cluster.gateway()
    early = await make_peer(first.url)
    await early.send(type="subscribe", symbols=["AAPL"])
    await early.expect("subscribed")
    before = await collect(early, 30)
    late = await cluster.gateway()
    peer = await make_peer(late.url)
    await peer.send(type="subscribe", symbols=["AAPL"], snapshot=20)
    await peer.expect("subscribed")
    snapshot = await peer.expect("snapshot")
    seqs = [t.seq for t in snapshot.ticks]
    assert len(seqs) == 20 and seqs == list(range(seqs[0], seqs[0] + 20))
    assert seqs[-1] >= before[-1].seq
    held = {t.seq: t for t in before}
    for tick in snapshot.ticks:
        if tick.seq in held:
            assert (tick.ts, tick.price, tick.volume) == (
                held[tick.seq].ts,
                held[tick.seq].price,
                held[tick.seq].volume,
            )
    live = await collect(peer, 10)
    assert_increasing(snapshot.ticks + live)
    await peer.send(type="list_symbols")
    symbols = await peer.expect("symbols")
    assert [s.symbol for s in symbols.symbols] == ["AAPL", "MSFT", "NVDA"]


async def test_gateway_restart_clients_resume(cluster: Cluster, make_peer: PeerFactory) -> None:
    """After a gateway restart a client reconnects to a new one and resumes with `since`: no gap, no repeat."""
    await cluster.feed()
    first = await cluster.gateway()
    peer = await make_peer(first.url)
    await peer.send(type="subscribe", symbols=["AAPL", "MSFT"])
    await peer.expect("subscribed")
    before = await collect(peer, 20)
    last = {t.symbol: t.seq for t in before}
    await first.stop()
    with pytest.raises(ConnectionClosed):
        await collect(peer, 10_000)
    assert peer.ws.close_code == 1001
    second = await cluster.gateway()
    peer = await make_peer(second.url)
    await peer.send(type="subscribe", symbols=["AAPL", "MSFT"], since=last)
    await peer.expect("subscribed")
    resumed = list(before)
    for _ in range(2):
        snapshot = await peer.recv()
        assert snapshot.type == "snapshot"
        if snapshot.ticks:
            assert snapshot.ticks[0].seq == last[snapshot.symbol] + 1, "the gap is sent exactly"
        resumed += snapshot.ticks
    resumed += await collect(peer, 20)
    assert_increasing(resumed)


async def test_unsubscribed_symbols_never_arrive(cluster: Cluster, make_peer: PeerFactory) -> None:
    """Through Redis a client gets only its symbols, before and after it changes them."""
    await cluster.feed()
    gateway = await cluster.gateway()
    peer = await make_peer(gateway.url)
    await peer.send(type="subscribe", symbols=["MSFT"])
    await peer.expect("subscribed")
    assert {t.symbol for t in await collect(peer, 40)} == {"MSFT"}
    await peer.send(type="subscribe", symbols=["NVDA"])
    await peer.expect("subscribed")
    await peer.send(type="unsubscribe", symbols=["MSFT"])
    reply = await peer.expect("unsubscribed")
    assert reply.symbols == ["NVDA"]
    assert {t.symbol for t in await collect(peer, 40)} == {"NVDA"}


async def test_bus_counters_in_metrics(cluster: Cluster, make_peer: PeerFactory) -> None:
    """A gateway's /metrics exports the Redis bus counters next to its own."""
    import urllib.request

    await cluster.feed()
    gateway = await cluster.gateway()
    peer = await make_peer(gateway.url)
    await peer.send(type="subscribe", symbols=["AAPL"])
    await collect(peer, 5)
    url = gateway.url.replace("ws://", "http://") + "/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert "ticker_bus_delivered_total" in text and "ticker_bus_reconnects_total 0.0" in text
    assert "ticker_ticks_delivered_total" in text
