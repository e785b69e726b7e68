"""A private redis-server per test, and feed and gateway servers on it.

The tests skip where Debian's ``redis-server`` is missing, unless
``TICKER_REQUIRE_REDIS=1`` (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ticker_server.app import TickerServer
from ticker_server.protocol import Tick

from ..server import conftest as server
from ..server.conftest import Peer, PeerFactory, ServerFactory
from ..servers import ServerProcess
from ..timing import TIMEOUT

__all__ = [
    "SYMBOLS",
    "TIMEOUT",
    "Cluster",
    "Peer",
    "PeerFactory",
    "RedisProcess",
    "assert_increasing",
    "collect",
]

# pytest finds fixtures by name in a conftest's namespace: these come from the server tests.
server_defaults = server.server_defaults
make_peer = server.make_peer

SYMBOLS = ("AAPL", "MSFT", "NVDA")
"""A small universe: 50 ticks/s each keeps three servers in one process light."""


def redis_binary() -> str:
    """The redis-server to run; skips (or fails where TICKER_REQUIRE_REDIS=1) without one."""
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if os.path.exists(path):
        return path
    message = "redis-server not found: install Debian's redis-server package to run the Redis tests"
    if os.environ.get("TICKER_REQUIRE_REDIS") == "1":
        pytest.fail(f"{message} (TICKER_REQUIRE_REDIS=1)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisProcess:
    """A redis-server without persistence on one port, which a test may kill and start again.

    Args:
        binary: the redis-server executable.
        directory: its working directory (a test's tmp_path).
        password: set as requirepass, and put in :attr:`url`.
    """

    def __init__(self, binary: str, directory: Path, password: str | None = None) -> None:
        self.binary = binary
        self.directory = directory
        self.password = password
        self.port = free_port()
        self._process: ServerProcess | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start it and wait until it accepts connections."""
        process = await asyncio.create_subprocess_exec(
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            *(["--requirepass", self.password] if self.password else []),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._process = ServerProcess(process, "redis-server")
        try:
            await self._process.wait_log("Ready to accept connections", TIMEOUT)
        except BaseException:
            await self.kill()
            raise

    async def kill(self) -> None:
        """SIGKILL: no goodbye to its clients, and its data is gone."""
        process, self._process = self._process, None
        if process is not None:
            await process.kill()

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            await process.stop()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    """A private redis-server on a free port in tmp_path, stopped at teardown."""
    server = RedisProcess(redis_binary(), tmp_path)
    await server.start()
    yield server
    await server.stop()


class Cluster:
    """Feed and gateway servers (real ones, in this process) sharing one Redis."""

    def __init__(self, redis: RedisProcess, make_server: ServerFactory) -> None:
        self.redis = redis
        self._make_server = make_server

    async def feed(self, **overrides: Any) -> TickerServer:
        settings: dict[str, Any] = {"symbols": SYMBOLS}
        settings.update(overrides)
        return await self._make_server(role="feed", broker=self.redis.url, **settings)

    async def gateway(self, **overrides: Any) -> TickerServer:
        return await self._make_server(role="gateway", broker=self.redis.url, **overrides)


@pytest.fixture
async def cluster(redis_server: RedisProcess, make_server: ServerFactory) -> Cluster:
    """Servers on the private Redis; Redis is set up first, so it stops after them."""
    return Cluster(redis_server, make_server)


async def collect(peer: Peer, count: int, timeout: float = TIMEOUT) -> list[Tick]:
    """Receive until ``count`` live ticks arrived (other messages are skipped)."""
    ticks: list[Tick] = []
    async with asyncio.timeout(timeout):
        while len(ticks) < count:
            message = await peer.recv(timeout)
            if message.type == "ticks":
                ticks.extend(message.ticks)
    return ticks


def assert_increasing(ticks: list[Tick]) -> None:
    """Each symbol's seqs strictly increase: no repeat, no reordering."""
    last: dict[str, int] = {}
    for tick in ticks:
        assert tick.seq > last.get(tick.symbol, 0), f"{tick.symbol} seq {tick.seq} after {last}"
        last[tick.symbol] = tick.seq
