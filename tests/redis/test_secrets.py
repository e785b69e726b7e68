"""The Redis password in --broker never reaches a log, whatever happens to Redis."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ..server.conftest import PeerFactory, ServerFactory
from ..servers import SpawnServer
from .conftest import SYMBOLS, RedisProcess, collect, redis_binary
from .test_cli import FEED_READY
from .test_faults import wait_for

PASSWORD = "s3cr3t-redis-pass"


async def test_redis_password_is_redacted_in_every_log_line(
    tmp_path: Path,
    make_server: ServerFactory,
    make_peer: PeerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Feed and gateway on redis://:PASS@host, Redis killed and restarted: the URL is logged, the password never."""
    redis = RedisProcess(redis_binary(), tmp_path, password=PASSWORD)
    await redis.start()
    try:
        with caplog.at_level(logging.DEBUG):
            feed = await make_server(role="feed", broker=redis.url, symbols=SYMBOLS)
            gateway = await make_server(role="gateway", broker=redis.url)
            peer = await make_peer(gateway.url)
            await peer.send(type="subscribe", symbols=["AAPL"])
            await peer.expect("subscribed")
            await collect(peer, 5)
            await redis.kill()
            await peer.expect("error")  # feed_unavailable
            await redis.start()
            assert gateway.gateway is not None
            await wait_for(lambda: gateway.gateway.feed_available, "the feed to come back")
            await collect(peer, 5)
            await feed.stop()
    finally:
        await redis.stop()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert f"redis://:***@127.0.0.1:{redis.port}/0" in text
    assert PASSWORD not in text


async def test_processes_never_log_the_redis_password(
    tmp_path: Path, make_peer: PeerFactory, spawn_server: SpawnServer
) -> None:
    """The feed and gateway processes at --log-level DEBUG name the broker without its password."""
    redis = RedisProcess(redis_binary(), tmp_path, password=PASSWORD)
    await redis.start()
    debug = ("--log-level", "DEBUG")
    try:
        feed = await spawn_server(
            "feed", "--broker", redis.url, "--symbols", "AAPL", *debug, ready=FEED_READY
        )
        gateway = await spawn_server("gateway", "--broker", redis.url, "--port", "0", *debug)
        peer = await make_peer(gateway.url)
        await peer.send(type="subscribe", symbols=["AAPL"])
        await collect(peer, 3)
        await peer.ws.close()
        assert (await gateway.stop(), await feed.stop()) == (0, 0)
    finally:
        await redis.stop()
    text = gateway.text() + feed.text()
    assert "feed publishing to redis://:***@" in text and "redis://:***@" in text
    assert PASSWORD not in text
