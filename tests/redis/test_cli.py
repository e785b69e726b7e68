"""The two roles as real processes: ``python -m ticker_server feed`` and ``gateway`` on one Redis."""

from __future__ import annotations

from ..servers import SpawnServer
from .conftest import PeerFactory, RedisProcess, assert_increasing, collect

FEED_READY = "feed publishing to"
"""The line a feed process logs once it publishes (a feed serves no clients, so no URL)."""


async def test_feed_and_gateway_processes(
    redis_server: RedisProcess, make_peer: PeerFactory, spawn_server: SpawnServer
) -> None:
    """A feed and a gateway process on one Redis serve a client, and SIGTERM stops both with exit code 0."""
    broker = redis_server.url
    feed = await spawn_server(
        "feed", "--broker", broker, "--symbols", "AAPL,MSFT", "--tick-rate", "50", ready=FEED_READY
    )
    gateway = await spawn_server("gateway", "--broker", broker, "--port", "0")
    peer = await make_peer(gateway.url)
    await peer.send(type="subscribe", symbols=["AAPL", "MSFT"])
    await peer.expect("subscribed")
    ticks = await collect(peer, 20)
    assert_increasing(ticks)
    assert {t.symbol for t in ticks} == {"AAPL", "MSFT"}
    await peer.ws.close()
    codes = (await gateway.stop(), await feed.stop())
    assert codes == (0, 0), gateway.text() + feed.text()
