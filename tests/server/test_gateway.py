"""Protocol v1 end to end: a real server on port 0 and real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import defaultdict
from itertools import pairwise

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ticker_server.app import TickerServer
from ticker_server.conflation import UNMERGED_MAX
from ticker_server.protocol import Tick, ts_micros

from .conftest import TIMEOUT, Peer, PeerFactory, ServerFactory, until


async def live_ticks(peer: Peer, count: int) -> list[Tick]:
    """Receive until ``count`` live ticks arrived (other messages are skipped)."""
    ticks: list[Tick] = []
    async with asyncio.timeout(TIMEOUT):
        while len(ticks) < count:
            message = await peer.recv()
            if message.type == "ticks":
                ticks.extend(message.ticks)
    return ticks


async def test_hello_describes_the_server(server: TickerServer) -> None:
    """The first message is hello with protocol 1, the symbols, the rate cap and the heartbeat."""
    async with connect(server.url) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert hello["type"] == "hello" and hello["protocol"] == 1
    assert hello["server"].startswith("ticker_server ")
    assert "AAPL" in hello["symbols"] and len(hello["symbols"]) >= 15
    assert hello["heartbeat"] == 5.0 and hello["max_rate"] == 0.0
    assert hello["epoch"]


async def test_subscribe_snapshot_then_live(server: TickerServer, make_peer: PeerFactory) -> None:
    """subscribed (whole set, id echoed), then each snapshot oldest first, then live ticks after it."""
    warm = await make_peer(server.url)
    await warm.send(type="subscribe", symbols=["AAPL", "MSFT"])
    await live_ticks(warm, 20)  # the books now hold some history
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=["aapl", "MSFT"], snapshot=5, id="s1")
    reply = await peer.recv()
    assert reply.type == "subscribed" and reply.symbols == ["AAPL", "MSFT"] and reply.id == "s1"
    snapshots = {}
    for _ in range(2):
        snap = await peer.recv()
        assert snap.type == "snapshot"
        seqs = [t.seq for t in snap.ticks]
        assert 1 <= len(seqs) <= 5 and seqs == sorted(seqs)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        snapshots[snap.symbol] = seqs[-1]
    assert set(snapshots) == {"AAPL", "MSFT"}
    last = dict(snapshots)
    for tick in await live_ticks(peer, 30):
        assert tick.seq > last[tick.symbol], "live ticks continue strictly after the snapshot"
        last[tick.symbol] = tick.seq


async def test_unsubscribe_stops_that_symbol(server: TickerServer, make_peer: PeerFactory) -> None:
    """After "unsubscribed" no tick of a removed symbol arrives, while kept symbols go on."""
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=["AAPL", "MSFT"])
    await peer.expect("subscribed")
    await live_ticks(peer, 5)
    await peer.send(type="unsubscribe", symbols=["AAPL"], id=9)
    reply = await peer.expect("unsubscribed")
    assert reply.symbols == ["MSFT"] and reply.id == 9
    ticks = await live_ticks(peer, 40)
    assert {t.symbol for t in ticks} == {"MSFT"}


async def test_unknown_symbol_reported_rest_applied(
    server: TickerServer, make_peer: PeerFactory
) -> None:
    """Unknown symbols get unknown_symbol naming them; the known ones are still subscribed."""
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=["NOPE", "AAPL", "ZZZZ"], id=1)
    error = await peer.recv()
    assert error.type == "error" and error.code == "unknown_symbol" and error.id == 1
    assert "NOPE" in error.message and "ZZZZ" in error.message and error.symbols == ["NOPE", "ZZZZ"]
    reply = await peer.recv()
    assert reply.type == "subscribed" and reply.symbols == ["AAPL"]
    assert {t.symbol for t in await live_ticks(peer, 3)} == {"AAPL"}


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ("not json", "bad_request", "JSON"),
        ("[1, 2]", "bad_request", "object"),
        ('{"symbols": ["AAPL"]}', "bad_request", "type"),
        ('{"type": "subscribe"}', "bad_request", "symbols"),
        ('{"type": "subscribe", "symbols": "AAPL"}', "bad_request", "symbols"),
        ('{"type": "subscribe", "symbols": [1]}', "bad_request", "symbols.0"),
        ('{"type": "subscribe", "symbols": ["AAPL"], "max_rate": "4"}', "bad_request", "max_rate"),
        ('{"type": "subscribe", "symbols": ["AAPL"], "max_rate": -1}', "bad_request", "max_rate"),
        ('{"type": "subscribe", "symbols": ["AAPL"], "snapshot": 1.5}', "bad_request", "snapshot"),
        ('{"type": "subscribe", "symbols": []}', "bad_request", "symbols"),
        ('{"type": "launch_rockets", "id": 3}', "unknown_type", "launch_rockets"),
    ],
)
async def test_bad_requests_get_errors_and_connection_survives(
    server: TickerServer, make_peer: PeerFactory, frame: str, code: str, field: str
) -> None:
    """Each malformed request gets its error code naming the field, and the connection keeps working."""
    peer = await make_peer(server.url)
    await peer.ws.send(frame)
    error = await peer.recv()
    assert error.type == "error" and error.code == code
    assert field in error.message
    await peer.send(type="ping", id="after")
    pong = await peer.expect("pong")
    assert pong.id == "after"


async def test_binary_frame_is_a_bad_request(server: TickerServer, make_peer: PeerFactory) -> None:
    """A binary frame gets bad_request and does not close the connection."""
    peer = await make_peer(server.url)
    await peer.ws.send(b'{"type":"ping"}')
    error = await peer.recv()
    assert error.type == "error" and error.code == "bad_request" and "binary" in error.message
    await peer.send(type="ping")
    await peer.expect("pong")


async def test_list_symbols_and_ping(server: TickerServer, make_peer: PeerFactory) -> None:
    """list_symbols gives names and prices; ping gives pong with the server time and the id."""
    peer = await make_peer(server.url)
    await peer.send(type="list_symbols", id=5)
    reply = await peer.expect("symbols")
    assert reply.id == 5
    by_symbol = {s.symbol: s for s in reply.symbols}
    assert by_symbol["AAPL"].name == "Apple Inc." and by_symbol["AAPL"].price > 0
    before = time.time()
    await peer.send(type="ping", id=77)
    pong = await peer.expect("pong")
    assert pong.id == 77 and abs(pong.ts - before) < 1.0


async def test_max_rate_gives_exact_clock_aligned_windows(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """At max_rate 4 every update covers ticks of one 250 ms window (exact open/high/low/size against the full feed), about 4 a second, and nothing held is older than two windows."""
    server = await make_server(tick_rate=100.0, max_rate=0.0)
    symbols = ["AAPL", "MSFT", "NVDA"]
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=symbols, max_rate=4)
    assert (await peer.expect("subscribed")).max_rate == 4.0
    arrivals: dict[str, list[tuple[float, Tick]]] = defaultdict(list)
    async with asyncio.timeout(TIMEOUT + 3):
        while sum(len(v) for v in arrivals.values()) < 30:
            message = await peer.recv()
            now = time.time()
            if message.type == "ticks":
                for tick in message.ticks:
                    arrivals[tick.symbol].append((now, tick))
    # The full feed over the same stretch, from the server's history (every tick, unmerged).
    full = await make_peer(server.url)
    since = {symbol: seen[0][1].seq for symbol, seen in arrivals.items()}
    await full.send(type="subscribe", symbols=list(since), since=since)
    feed: dict[str, dict[int, Tick]] = defaultdict(dict)
    async with asyncio.timeout(TIMEOUT):
        while any(max(feed[s], default=0) < seen[-1][1].seq for s, seen in arrivals.items()):
            message = await full.recv()
            if message.type == "snapshot":
                feed[message.symbol].update((t.seq, t) for t in message.ticks)
    window = 250_000
    for symbol, seen in arrivals.items():
        for (_, prev), (_, tick) in pairwise(seen):
            covered = [feed[symbol][seq] for seq in range(prev.seq + 1, tick.seq + 1)]
            assert tick.covers == len(covered), "merged counts exactly the skipped ticks"
            assert {ts_micros(t.ts) // window for t in covered} == {ts_micros(tick.ts) // window}
            assert tick.size == sum(t.size for t in covered)
            if tick.merged:
                prices = [t.price for t in covered]
                assert (tick.open, tick.high, tick.low) == (prices[0], max(prices), min(prices))
        times = [at for at, _ in seen]
        # At most one send per window: any three updates span at least one window (less jitter).
        assert all(
            c - a >= 0.25 - 0.03 for a, _, c in zip(times, times[1:], times[2:], strict=False)
        )
        for at, tick in seen[1:]:
            assert at - tick.ts < 2 * 0.25 + 0.1, "what a client holds is at most two windows old"
    assert any(t.merged for seen in arrivals.values() for _, t in seen), (
        "100 ticks/s at 4/s must conflate"
    )


async def test_resubscribe_changes_rate_without_error(
    server: TickerServer, make_peer: PeerFactory
) -> None:
    """Subscribing again to a held symbol is no error: same set, no second snapshot."""
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=["AAPL"], max_rate=2)
    await peer.expect("subscribed")
    await peer.send(type="subscribe", symbols=["AAPL"], max_rate=20, snapshot=3, id="again")
    reply = await peer.expect("subscribed")
    assert reply.symbols == ["AAPL"] and reply.id == "again"
    message = await peer.recv()
    assert message.type in {"ticks", "heartbeat"}


async def test_too_many_symbols_changes_nothing(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """Going over max_symbols gets too_many_symbols and leaves the subscription as it was."""
    server = await make_server(max_symbols=2)
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=["AAPL"])
    await peer.expect("subscribed")
    await peer.send(type="subscribe", symbols=["MSFT", "NVDA"], id=4)
    error = await peer.expect("error")
    assert error.code == "too_many_symbols" and error.id == 4 and "2" in error.message
    await peer.send(type="unsubscribe", symbols=["TSLA"])
    assert (await peer.expect("unsubscribed")).symbols == ["AAPL"]


async def test_heartbeat_when_idle(make_server: ServerFactory, make_peer: PeerFactory) -> None:
    """A client with nothing to receive gets heartbeats at the announced interval."""
    server = await make_server(heartbeat=0.3)
    peer = await make_peer(server.url)
    first = await peer.recv(timeout=2)
    second = await peer.recv(timeout=2)
    assert first.type == second.type == "heartbeat"
    assert 0.2 <= second.ts - first.ts <= 1.2


async def test_frame_over_64k_closes_1009(server: TickerServer) -> None:
    """A frame of 64 KiB + 1 byte closes the connection with 1009."""
    async with connect(server.url, max_size=None) as ws:
        await ws.recv()
        await ws.send("x" * (64 * 1024 + 1))
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await ws.recv()
        assert ws.close_code == 1009


async def test_frame_of_exactly_64k_is_accepted(
    server: TickerServer, make_peer: PeerFactory
) -> None:
    """The limit is inclusive: a 64 KiB request is parsed (and rejected for its content only)."""
    peer = await make_peer(server.url)
    padding = 64 * 1024 - len('{"type":"ping","pad":""}')
    await peer.ws.send('{"type":"ping","pad":"' + "x" * padding + '"}')
    await peer.expect("pong")


async def test_same_seed_same_prices(make_server: ServerFactory, make_peer: PeerFactory) -> None:
    """Two servers with the same seed generate the same prices and sizes for the same seqs."""
    streams = []
    for _ in range(2):
        server = await make_server(seed=42, symbols=("AAPL", "MSFT"))
        peer = await make_peer(server.url)
        # From seq 1 on (the snapshot holds the start), so the runs overlap however late each
        # subscription comes on a loaded machine.
        await peer.send(type="subscribe", symbols=["AAPL"], snapshot=1000)
        await peer.expect("subscribed")
        snapshot = await peer.expect("snapshot")
        ticks = [*snapshot.ticks, *await live_ticks(peer, 3)]
        streams.append({t.seq: (t.price, t.size, t.volume) for t in ticks})
    common = set(streams[0]) & set(streams[1])
    assert 1 in common, "both runs hold their first tick"
    assert all(streams[0][s] == streams[1][s] for s in common)


async def small_window_client(server: TickerServer, max_queue: int | None) -> ClientConnection:
    """A client of every symbol with a 4 KiB receive buffer, so a stall reaches the server soon.

    Loopback kernel buffers otherwise absorb megabytes before the server feels anything.
    """
    assert server.gateway is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    ws = await connect(server.url, sock=sock, max_size=None, max_queue=max_queue)
    await ws.send(json.dumps({"type": "subscribe", "symbols": list(server.gateway.listings)}))
    return ws


async def test_stalled_reader_never_delays_others(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """A client that stops reading is cut off at the buffer limit, its memory stays bounded, and another client's latency stays low."""
    server = await make_server(
        tick_rate=200.0, max_buffer=16 * 1024, slow_grace=60.0, sndbuf=16 * 1024
    )
    gateway = server.gateway
    assert gateway is not None
    stalled = await small_window_client(server, max_queue=None)
    # Stop reading: websockets buffers at most max_queue messages, then TCP pushes back.
    stalled.transport.pause_reading()
    healthy = await make_peer(server.url)
    await healthy.send(type="subscribe", symbols=["AAPL", "MSFT"])
    await healthy.expect("subscribed")
    latencies: list[float] = []
    async with asyncio.timeout(TIMEOUT * 3):
        while not gateway.blocked or len(latencies) < 200:
            message = await healthy.recv()
            if message.type == "ticks":
                now = time.time()
                latencies += [now - t.ts for t in message.ticks]
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    assert p99 < 0.05, f"p99 latency of the healthy client {p99 * 1000:.1f} ms"
    [slow] = list(gateway.blocked)
    assert slow.connection is not None
    # Bounded: below the limit plus one flush's frame, however long it stalls. Unthrottled and
    # a little behind, that frame holds up to UNMERGED_MAX ticks (~150 B each) per symbol.
    one_flush = len(gateway.listings) * UNMERGED_MAX * 150
    assert slow.connection.buffered < 16 * 1024 + one_flush
    assert len(slow.symbols) == len(gateway.listings)
    stalled.transport.resume_reading()
    await stalled.close()


async def test_reader_that_stalls_again_is_blocked_again(make_server: ServerFactory) -> None:
    """Blocked, drained and unblocked, then stalled again: blocked again, its buffer still bounded."""
    server = await make_server(
        tick_rate=200.0, max_buffer=16 * 1024, slow_grace=60.0, sndbuf=16 * 1024
    )
    gateway = server.gateway
    assert gateway is not None
    ws = await small_window_client(server, max_queue=None)
    for _ in range(2):
        ws.transport.pause_reading()
        await until(gateway, lambda: bool(gateway.blocked), TIMEOUT * 3)
        [client] = list(gateway.blocked)
        assert client.connection is not None
        assert client.connection.buffered < 16 * 1024 + 8 * 1024
        ws.transport.resume_reading()  # websockets queues what it reads (max_queue=None)
        await until(gateway, lambda: not gateway.blocked, TIMEOUT * 3)
        assert not client.blocked
    await ws.close()


async def test_slow_consumer_closed_with_1013(make_server: ServerFactory) -> None:
    """A client stuck above the buffer limit longer than the grace period is closed with 1013."""
    server = await make_server(
        tick_rate=200.0, max_buffer=8 * 1024, slow_grace=0.5, sndbuf=16 * 1024
    )
    gateway = server.gateway
    assert gateway is not None
    ws = await small_window_client(server, max_queue=4)
    ws.transport.pause_reading()
    await until(gateway, lambda: gateway.stats.slow_closes == 1, TIMEOUT * 4)
    ws.transport.resume_reading()
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(TIMEOUT * 2):
            while True:
                await ws.recv()
    assert ws.close_code == 1013


async def test_unthrottled_clients_share_frames_and_see_identical_streams(
    server: TickerServer, make_peer: PeerFactory
) -> None:
    """Clients wanting every tick of the same symbols ride one group and receive identical ticks."""
    gateway = server.gateway
    assert gateway is not None
    peers = [await make_peer(server.url) for _ in range(3)]
    for peer in peers:
        await peer.send(type="subscribe", symbols=["AAPL", "MSFT"])
        await peer.expect("subscribed")
    async with asyncio.timeout(TIMEOUT):
        while not any(len(g.members) == 3 for g in gateway.fanout.groups.values()):
            await live_ticks(peers[0], 1)
    # Read all three at once: each stream then covers the same stretch of the feed.
    batches = await asyncio.gather(*(live_ticks(peer, 80) for peer in peers))
    streams = [{(t.symbol, t.seq): t for t in batch} for batch in batches]
    common = set(streams[0]) & set(streams[1]) & set(streams[2])
    assert len(common) >= 10
    for key in common:
        assert streams[0][key] == streams[1][key] == streams[2][key]
        assert streams[0][key].merged is None, "unthrottled: nothing conflated"


async def test_long_snapshot_is_split_into_frames_within_64k(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """A snapshot larger than one 64 KiB frame arrives as consecutive snapshot messages, none over the limit."""
    server = await make_server(tick_rate=400.0, history=2000, symbols=("AAPL", "MSFT"))
    warm = await make_peer(server.url)
    await warm.send(type="subscribe", symbols=["AAPL"])
    await live_ticks(warm, 1000)
    peer = await make_peer(server.url, max_size=64 * 1024)
    await peer.send(type="subscribe", symbols=["AAPL"], snapshot=2000)
    await peer.expect("subscribed")
    seqs: list[int] = []
    chunks = 0
    async with asyncio.timeout(TIMEOUT):
        while len(seqs) < 1000:
            message = await peer.recv()
            if message.type == "snapshot":
                chunks += 1
                seqs += [t.seq for t in message.ticks]
    assert chunks >= 2
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "chunks continue each other exactly"
