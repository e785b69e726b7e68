"""The Qt-free client against a real ticker_server on port 0."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from pathlib import Path

import pytest

from ticker_desktop.client import (
    ClientOptions,
    ConnectionState,
    HelloReceived,
    LatencyMeasured,
    ServerError,
    StateChanged,
    SubscriptionChanged,
    TickerClient,
    TicksReceived,
    WatchedSymbols,
)
from ticker_server.protocol import Tick

from ..conftest import ServerFactory
from .conftest import FAST, EventLog, until


def ticks_of(log: EventLog, symbol: str) -> list[Tick]:
    return [t for e in log.of(TicksReceived) for t in e.ticks if t.symbol == symbol]


def assert_no_holes_or_repeats(ticks: list[Tick]) -> None:
    """Each tick follows the previous one exactly (a merged tick covers the seqs it skips)."""
    for before, after in itertools.pairwise(ticks):
        assert after.seq - after.covers == before.seq, (before, after)


async def test_connect_subscribe_snapshot_then_live_ticks(
    make_server: ServerFactory,
) -> None:
    """A subscribe gets subscribed, a snapshot of history first, then live ticks in seq order."""
    server = await make_server()
    client = TickerClient(server.url, FAST)
    log = EventLog(client)
    client.start()
    try:
        hello = await log.wait_for(HelloReceived)
        assert "AAPL" in hello.hello.symbols
        await until(lambda: client.state is ConnectionState.LIVE, "live")
        await client.subscribe(["aapl", "MSFT"])
        changed = await log.wait_for(SubscriptionChanged)
        assert sorted(changed.symbols) == ["AAPL", "MSFT"]
        snapshot = await log.wait_for(TicksReceived, lambda e: e.snapshot == "AAPL")
        live = await log.wait_for(TicksReceived, lambda e: e.snapshot is None)
        assert log.events.index(snapshot) < log.events.index(live)
        await until(lambda: len(ticks_of(log, "AAPL")) >= 10, "ten AAPL ticks")
        assert_no_holes_or_repeats(ticks_of(log, "AAPL"))
        assert client.repeats == 0
    finally:
        await client.close()


async def test_list_symbols_and_ping(client: TickerClient) -> None:
    """list_symbols returns names and prices; pings measure a round trip."""
    log = EventLog(client)
    await until(lambda: client.connected, "connected")
    infos = await client.list_symbols()
    assert {"AAPL", "MSFT"} <= {i.symbol for i in infos}
    assert all(i.name and i.price > 0 for i in infos)
    latency = await log.wait_for(LatencyMeasured)
    assert 0 < latency.rtt < 1.0


async def test_unsubscribe_stops_the_symbol(client: TickerClient) -> None:
    """After unsubscribe the server's set no longer has the symbol and no more of its ticks arrive."""
    log = EventLog(client)
    await client.subscribe(["AAPL", "MSFT"])
    await until(lambda: ticks_of(log, "MSFT"), "MSFT ticks")
    await client.unsubscribe(["MSFT"])
    changed = await log.wait_for(SubscriptionChanged, lambda e: "MSFT" not in e.symbols)
    assert changed.symbols == ["AAPL"]
    mark = log.events.index(changed)
    for _ in range(3):
        event = await log.wait_for(TicksReceived, start=mark)
        assert all(t.symbol == "AAPL" for t in event.ticks)
        mark = log.events.index(event) + 1
    assert client.symbols == ["AAPL"]


async def test_unknown_symbol_is_reported_and_not_kept(client: TickerClient) -> None:
    """An unknown symbol yields the server's unknown_symbol error and leaves the wanted set."""
    log = EventLog(client)
    await until(lambda: client.connected, "connected")
    await client.subscribe(["NOPE", "AAPL"])
    error = await log.wait_for(ServerError)
    assert error.error.code == "unknown_symbol"
    assert error.request == "subscribe"
    assert "NOPE" in error.error.message
    assert client.symbols == ["AAPL"]


async def test_list_symbols_when_disconnected_raises() -> None:
    """Requests need a connection; the error says so instead of hanging."""
    client = TickerClient("ws://127.0.0.1:9", FAST)
    with pytest.raises(ConnectionError):
        await client.list_symbols()


async def test_reconnect_resumes_with_since_without_holes_or_repeats(client: TickerClient) -> None:
    """A dropped connection resumes with since: the gap is filled exactly, nothing repeats."""
    log = EventLog(client)
    await client.subscribe(["AAPL"])
    await until(lambda: len(ticks_of(log, "AAPL")) >= 5, "AAPL ticks")
    mark = len(log.events)
    await client.reconnect()
    hello = await log.wait_for(HelloReceived, start=mark)
    assert not hello.epoch_changed
    resumed = await log.wait_for(
        TicksReceived, lambda e: e.snapshot == "AAPL", start=log.events.index(hello)
    )
    held = len(ticks_of(log, "AAPL"))
    await until(lambda: len(ticks_of(log, "AAPL")) >= held + 5, "ticks after the resume")
    assert_no_holes_or_repeats(ticks_of(log, "AAPL"))
    assert client.repeats == 0, "since should make the server send only the gap"
    assert len(resumed.ticks) < 100


async def test_reconnect_after_server_restart_without_duplicates(
    make_server: ServerFactory,
) -> None:
    """Server stopped and restarted on the same port: reconnecting, then live, new epoch, no repeats."""
    server = await make_server()
    client = TickerClient(server.url, FAST)
    log = EventLog(client)
    client.start()
    try:
        await client.subscribe(["AAPL"])
        await until(lambda: len(ticks_of(log, "AAPL")) >= 5, "AAPL ticks")
        before = len(ticks_of(log, "AAPL"))
        await server.stop()
        await log.wait_for(StateChanged, lambda e: e.state is ConnectionState.RECONNECTING)
        mark = len(log.events)
        await make_server(port=server.port)
        hello = await log.wait_for(HelloReceived, start=mark)
        assert hello.epoch_changed
        await log.wait_for(StateChanged, lambda e: e.state is ConnectionState.LIVE, mark)
        await until(lambda: len(ticks_of(log, "AAPL")) >= before + 5, "ticks from the new server")
        after = ticks_of(log, "AAPL")[before:]
        assert_no_holes_or_repeats(after)
        assert after[0].ts > ticks_of(log, "AAPL")[before - 1].ts
    finally:
        await client.close()


@pytest.mark.parametrize("phase", ["waiting", "connecting"])
async def test_close_during_reconnect_leaves_no_tasks(
    make_server: ServerFactory, phase: str
) -> None:
    """Closing while waiting to retry or while a retry is connecting cancels and awaits everything."""
    server = await make_server()
    options = ClientOptions(backoff_base=5.0 if phase == "waiting" else 0.01, backoff_cap=5.0)
    client = TickerClient(server.url, options)
    log = EventLog(client)
    client.start()
    await log.wait_for(StateChanged, lambda e: e.state is ConnectionState.LIVE)
    await server.stop()
    await log.wait_for(StateChanged, lambda e: e.state is ConnectionState.RECONNECTING)
    if phase == "connecting":
        await log.wait_for(
            StateChanged, lambda e: e.state is ConnectionState.CONNECTING and e.attempt > 0
        )
    await client.close()
    assert client.state is ConnectionState.CLOSED
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_silent_connection_is_dropped_as_stale(make_server: ServerFactory) -> None:
    """With no message for stale_after seconds the client drops the connection and reconnects."""
    server = await make_server(tick_rate=0.01, heartbeat=60.0)
    options = ClientOptions(
        ping_interval=60.0, stale_after=0.3, backoff_base=0.01, backoff_cap=0.05
    )
    client = TickerClient(server.url, options)
    log = EventLog(client)
    client.start()
    try:
        event = await log.wait_for(StateChanged, lambda e: e.state is ConnectionState.RECONNECTING)
        assert "stale" in event.detail
        await log.wait_for(
            StateChanged, lambda e: e.state is ConnectionState.LIVE, log.events.index(event)
        )
    finally:
        await client.close()


async def test_reconnect_now_cuts_a_long_backoff_short(make_server: ServerFactory) -> None:
    """reconnect() during a long backoff wait connects at once instead of waiting it out."""
    server = await make_server()
    options = ClientOptions(backoff_base=60.0, backoff_cap=60.0)
    client = TickerClient(server.url, options, rng=random.Random(1))
    log = EventLog(client)
    client.start()
    try:
        await log.wait_for(StateChanged, lambda e: e.state is ConnectionState.LIVE)
        await server.stop()
        waiting = await log.wait_for(
            StateChanged, lambda e: e.state is ConnectionState.RECONNECTING
        )
        assert waiting.retry_in is not None and waiting.retry_in > 5.0
        mark = len(log.events)
        await make_server(port=server.port)
        await client.reconnect()
        await log.wait_for(
            StateChanged, lambda e: e.state is ConnectionState.LIVE, mark, timeout=5.0
        )
    finally:
        await client.close()


async def test_token_and_private_ca_over_wss(make_server: ServerFactory, tmp_path: Path) -> None:
    """With a token and a private CA the client goes live over wss://; without the token it is refused."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    server = await make_server(certfile=str(certfile), keyfile=str(keyfile), tokens=("t0k3n",))
    assert server.url.startswith("wss://")
    good = TickerClient(server.url, dataclasses.replace(FAST, token="t0k3n", cafile=str(cafile)))
    refused = TickerClient(server.url, dataclasses.replace(FAST, cafile=str(cafile)))
    refused_log = EventLog(refused)
    good.start()
    refused.start()
    try:
        await until(lambda: good.state is ConnectionState.LIVE, "live over wss with the token")
        error = await refused_log.wait_for(StateChanged, lambda e: e.state is ConnectionState.ERROR)
        assert "401" in (error.detail or "")
    finally:
        await good.close()
        await refused.close()


async def test_editing_the_shared_watched_set_while_live_subscribes_and_unsubscribes(
    make_server: ServerFactory,
) -> None:
    """Whoever edits the client's watched set (the store, a widget), the server hears of it."""
    server = await make_server()
    watched = WatchedSymbols()
    # No ping for a minute: nothing but the edit itself may make the client send.
    options = dataclasses.replace(FAST, ping_interval=60.0)
    client = TickerClient(server.url, options, watched=watched)
    log = EventLog(client)
    client.start()
    try:
        await log.wait_for(StateChanged, lambda e: e.state is ConnectionState.LIVE)
        watched.add(["AAPL", "msft"])
        await log.wait_for(SubscriptionChanged, lambda e: sorted(e.symbols) == ["AAPL", "MSFT"])
        await log.wait_for(TicksReceived, lambda e: any(t.symbol == "MSFT" for t in e.ticks))
        assert client.last_seq("MSFT") is not None
        watched.remove(["MSFT"])
        await log.wait_for(SubscriptionChanged, lambda e: e.symbols == ["AAPL"])
        assert client.last_seq("MSFT") is None and client.symbols == ["AAPL"]
    finally:
        await client.close()
