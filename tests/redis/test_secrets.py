"""The Redis password in --broker never reaches a log, whatever happens to Redis."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import pytest

from ..server.conftest import PeerFactory, ServerFactory
from .conftest import SYMBOLS, TIMEOUT, RedisProcess, collect, redis_binary
from .test_cli import _read_log, _spawn
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
    tmp_path: Path, make_peer: PeerFactory
) -> None:
    """The feed and gateway processes at --log-level DEBUG name the broker without its password."""
    redis = RedisProcess(redis_binary(), tmp_path, password=PASSWORD)
    await redis.start()
    debug = ("--log-level", "DEBUG")
    feed = await _spawn("feed", "--broker", redis.url, "--symbols", "AAPL", *debug)
    gateway = await _spawn("gateway", "--broker", redis.url, "--port", "0", *debug)
    logs: list[str] = []
    try:
        url = await asyncio.wait_for(_read_log(gateway, logs, r"serving (ws://\S+)"), TIMEOUT * 3)
        assert url is not None, logs
        peer = await make_peer(url)
        await peer.send(type="subscribe", symbols=["AAPL"])
        await collect(peer, 3)
        await peer.ws.close()
    finally:
        for process in (gateway, feed):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(gateway.wait(), feed.wait()), TIMEOUT)
        await redis.stop()
    await _read_log(gateway, logs)
    await _read_log(feed, logs)
    text = "".join(logs)
    assert "feed publishing to redis://:***@" in text and "redis://:***@" in text
    assert PASSWORD not in text
