"""The desktop's client against a gateway restarted 20 times in a row while the feed runs on."""

from __future__ import annotations

import asyncio
import itertools

from ticker_desktop.client import ClientOptions, ConnectionState, TickerClient, TicksReceived
from ticker_desktop.events import ClientEvent
from ticker_server.protocol import Tick

from ..server.conftest import TIMEOUT
from .conftest import Cluster

RESTARTS = 20


async def test_twenty_gateway_restarts_resume_without_holes_or_repeats(cluster: Cluster) -> None:
    """Every restart is followed by a reconnect and a resume: the ticks held have no hole and no repeat."""
    await cluster.feed(tick_rate=40.0)
    gateway = await cluster.gateway()
    port = gateway.port
    options = ClientOptions(
        max_rate=None, snapshot=0, ping_interval=0.5, backoff_base=0.05, backoff_cap=0.2
    )
    client = TickerClient(gateway.url, options)
    ticks: list[Tick] = []
    arrived = asyncio.Event()

    def on_event(event: ClientEvent) -> None:
        if isinstance(event, TicksReceived):
            ticks.extend(t for t in event.ticks if t.symbol == "AAPL")
            arrived.set()

    client.add_listener(on_event)
    await client.subscribe(["AAPL"])
    client.start()
    try:
        for _ in range(RESTARTS):
            held = len(ticks)
            async with asyncio.timeout(TIMEOUT):
                while len(ticks) < held + 3:
                    arrived.clear()
                    await arrived.wait()
            await gateway.stop()
            gateway = await cluster.gateway(port=port)
        async with asyncio.timeout(TIMEOUT):
            while client.state is not ConnectionState.LIVE or len(ticks) < held + 6:
                arrived.clear()
                await arrived.wait()
    finally:
        await client.close()
        await gateway.stop()
    for before, after in itertools.pairwise(ticks):
        assert after.seq - after.covers == before.seq, (before, after)
    assert client.repeats == 0
    assert len(ticks) > RESTARTS * 3
