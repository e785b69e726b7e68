"""The Redis reader killed by an injected exception: 503 at once, restarted, no tick lost or repeated."""

from __future__ import annotations

import asyncio
import json

from ticker_server.app import TickerServer
from ticker_server.config import ServerConfig
from ticker_server.redis_bus import RedisBus
from ticker_server.supervision import Supervisor

from ..server.test_hardening import http_get
from ..server.test_supervision import fail_once, wait_until
from .conftest import Cluster, PeerFactory, assert_increasing, collect


async def test_a_failed_redis_reader_is_reported_and_resumes_where_it_was(
    cluster: Cluster, make_peer: PeerFactory
) -> None:
    """An exception in the reader: /healthz 503 naming it, then it restarts from its cursor and every seq arrives once."""
    await cluster.feed()
    supervisor = Supervisor(stable_after=0.5, base=0.1)
    config = ServerConfig(
        host="127.0.0.1", port=0, role="gateway", broker=cluster.redis.url, max_rate=0.0
    )
    gateway = TickerServer(config, supervisor=supervisor)
    await gateway.start()
    try:
        assert isinstance(gateway.bus, RedisBus)
        peer = await make_peer(gateway.url)
        await peer.send(type="subscribe", symbols=["AAPL"])
        await peer.expect("subscribed")
        before = await collect(peer, 5)
        fail_once(gateway.bus.guard, "admit")
        await wait_until(supervisor, lambda: "Redis reader" in supervisor.faults)
        url = gateway.url.replace("ws://", "http://") + "/healthz"
        status, _, body = await asyncio.to_thread(http_get, url)
        assert status == 503
        assert json.loads(body)["reason"] == "Redis reader failed (RuntimeError), restarting"
        await wait_until(supervisor, lambda: not supervisor.faults)
        after = await collect(peer, 20)
        ticks = before + after
        assert_increasing(ticks)
        seqs = [t.seq for t in ticks]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no hole across the restart"
    finally:
        await gateway.stop()
