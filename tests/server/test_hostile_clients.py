"""Hostile clients within the rate limit: replies stay bounded, requests cost linear time."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import weakref

import pytest
from websockets.exceptions import ConnectionClosed

from ticker_server.app import TickerServer
from ticker_server.gateway import MAX_DEFERRED, Client

from .conftest import TIMEOUT, PeerFactory, ServerFactory, until
from .test_gateway import live_ticks, small_window_client

MAX_BUFFER = 16 * 1024


def unknown_symbols_request(count: int) -> str:
    """A subscribe of ``count`` distinct unknown symbols, just under 64 KiB as the probe sent."""
    symbols = [str(i) for i in range(count)]
    return json.dumps({"type": "subscribe", "symbols": symbols}, separators=(",", ":"))


async def test_a_request_of_thousands_of_unknown_symbols_costs_linear_time(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """Five 64 KiB subscribes of 8,664 distinct unknown symbols are answered in well under a second (3.9 s when quadratic)."""
    server = await make_server()
    attacker = await make_peer(server.url)
    request = unknown_symbols_request(8664)
    assert len(request) < 64 * 1024
    started = time.perf_counter()
    for _ in range(5):
        await attacker.ws.send(request)
    for _ in range(5):
        error = await attacker.expect("error")
        assert error.code == "unknown_symbol" and len(error.symbols) == 100
    took = time.perf_counter() - started
    assert took < 1.0, f"{took:.2f} s for five requests"


async def test_a_client_not_reading_its_replies_is_bounded_then_closed(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """Subscribe-all-with-snapshots and unsubscribe, over and over, never reading: its buffer stays within one reply of the limit and it is closed with 1008."""
    server = await make_server(
        tick_rate=200.0, max_buffer=MAX_BUFFER, slow_grace=60.0, sndbuf=16 * 1024
    )
    gateway = server.gateway
    assert gateway is not None
    bystander = await make_peer(server.url)
    await bystander.send(type="subscribe", symbols=["AAPL"])
    await live_ticks(bystander, 100)  # about 100 ticks of every symbol in the books
    symbols = list(gateway.listings)
    reply = sum(
        sum(len(part) + 1 for part in gateway.fanout.books[s].snapshot(1000)) for s in symbols
    )
    assert reply > 10 * MAX_BUFFER, "each subscribe's snapshots are far above the buffer limit"
    ws = await small_window_client(server, max_queue=None)
    ws.transport.pause_reading()
    host, port = ws.local_address[:2]
    [client] = [c for c in gateway.clients if c.name == f"{host}:{port}"]
    subscribe = json.dumps({"type": "subscribe", "symbols": symbols, "snapshot": 1000})
    unsubscribe = json.dumps({"type": "unsubscribe", "symbols": symbols})
    peak = 0
    for _ in range(20):  # 40 requests: within the burst of 50
        await ws.send(unsubscribe)
        await ws.send(subscribe)
        await bystander.recv()  # a round of the loop, in which the server reads requests
        peak = max(peak, buffered(client))
        if client.closing:
            break
    async with asyncio.timeout(TIMEOUT):
        while not client.closing:  # the gateway exposes no event for this
            await bystander.recv()
    assert peak < MAX_BUFFER + reply + 64 * 1024, f"{peak} bytes queued"
    assert not client.deferred or len(client.deferred) <= MAX_DEFERRED
    ws.transport.resume_reading()
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(TIMEOUT * 2):
            while True:
                await ws.recv()
    assert ws.close_code == 1008
    await live_ticks(bystander, 20)


def buffered(client: Client) -> int:
    conn = client.connection
    return 0 if conn is None else conn.buffered


async def test_requests_held_while_blocked_are_answered_once_it_drains(
    make_server: ServerFactory,
) -> None:
    """A blocked client's few requests are not lost: each gets its reply, in order, after it reads again."""
    server = await make_server(
        tick_rate=200.0, max_buffer=MAX_BUFFER, slow_grace=60.0, sndbuf=16 * 1024
    )
    gateway = server.gateway
    assert gateway is not None
    ws = await small_window_client(server, max_queue=None)
    ws.transport.pause_reading()
    await until(gateway, lambda: bool(gateway.blocked), TIMEOUT * 3)
    [client] = list(gateway.blocked)
    for rid in range(3):
        await ws.send(json.dumps({"type": "ping", "id": rid}))
    await until(gateway, lambda: len(client.deferred or ()) == 3)
    ws.transport.resume_reading()
    pongs: list[int] = []
    async with asyncio.timeout(TIMEOUT * 3):
        while len(pongs) < 3:
            message = json.loads(await ws.recv())
            if message["type"] == "pong":
                pongs.append(message["id"])
    assert pongs == [0, 1, 2]
    await ws.close()


async def test_a_tiny_max_rate_is_granted_the_floor_and_freed_on_disconnect(
    server: TickerServer, make_peer: PeerFactory
) -> None:
    """max_rate 1e-300 is granted the slowest rate, 1/60; once the client goes, its connection is freed at once and its timers end within a minute."""
    assert server.gateway is not None
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=["AAPL", "MSFT"], max_rate=1e-300)
    subscribed = await peer.expect("subscribed")
    assert subscribed.max_rate == pytest.approx(1 / 60)
    await peer.expect("ticks")  # the first update of each window goes at once
    [client] = list(server.gateway.clients)
    assert client.connection is not None
    connection = weakref.ref(client.connection)
    await peer.ws.close()
    gateway = server.gateway
    await until(gateway, lambda: not gateway.clients)
    gc.collect()
    assert connection() is None, "nothing the gateway keeps holds the closed connection"
    assert not client.symbols and client.closed
    due = server.gateway.fanout.wheel.next_time()
    assert due is None or due <= server.clock() + 60.0 + 1e-6
