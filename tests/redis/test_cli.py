"""The two roles as real processes: ``python -m ticker_server feed`` and ``gateway`` on one Redis."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

from .conftest import TIMEOUT, PeerFactory, RedisProcess, assert_increasing, collect


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        # No backfill: a session of history costs seconds at every start.
        sys.executable, "-m", "ticker_server", "--backfill", "0", *args,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _read_log(
    process: asyncio.subprocess.Process, lines: list[str], until: str | None = None
) -> str | None:
    """Collect the process's log lines until one matches ``until`` (its first group) or it ends."""
    assert process.stderr is not None
    async for raw in process.stderr:
        line = raw.decode(errors="replace")
        lines.append(line)
        found = until and re.search(until, line)
        if found:
            return found.group(1)
    return None


async def test_feed_and_gateway_processes(
    redis_server: RedisProcess, make_peer: PeerFactory
) -> None:
    """A feed and a gateway process on one Redis serve a client, and SIGTERM stops both with exit code 0."""
    broker = redis_server.url
    feed = await _spawn("feed", "--broker", broker, "--symbols", "AAPL,MSFT", "--tick-rate", "50")
    gateway = await _spawn("gateway", "--broker", broker, "--port", "0")
    logs: dict[str, list[str]] = {"feed": [], "gateway": []}
    readers = [asyncio.create_task(_read_log(feed, logs["feed"]))]
    try:
        # Two interpreters start and import numpy, pydantic and redis: allow them longer.
        url = await asyncio.wait_for(
            _read_log(gateway, logs["gateway"], r"serving (ws://\S+)"), TIMEOUT * 3
        )
        readers.append(asyncio.create_task(_read_log(gateway, logs["gateway"])))
        assert url is not None, logs
        peer = await make_peer(url)
        await peer.send(type="subscribe", symbols=["AAPL", "MSFT"])
        await peer.expect("subscribed")
        ticks = await collect(peer, 20)
        assert_increasing(ticks)
        assert {t.symbol for t in ticks} == {"AAPL", "MSFT"}
        await peer.ws.close()
    finally:
        for process in (gateway, feed):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(gateway.wait(), feed.wait()), TIMEOUT)
        await asyncio.gather(*readers)
    assert (gateway.returncode, feed.returncode) == (0, 0), logs
