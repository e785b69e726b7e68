"""Settings shared by every test package."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

# Qt must never look for a display in tests; set before any test module imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from ticker_server.app import TickerServer
from ticker_server.config import ServerConfig

from .servers import ServerProcesses, SpawnServer

ServerFactory = Callable[..., Awaitable[TickerServer]]


@pytest.fixture
def server_defaults() -> dict[str, Any]:
    """The config every test server starts from; a test package overrides it to suit its tests."""
    return {"host": "127.0.0.1", "port": 0}


@pytest.fixture
async def make_server(server_defaults: dict[str, Any]) -> AsyncIterator[ServerFactory]:
    """Start real servers on 127.0.0.1, port 0 unless given; all are stopped at teardown."""
    started: list[TickerServer] = []

    async def factory(**overrides: Any) -> TickerServer:
        server = TickerServer(ServerConfig(**{**server_defaults, **overrides}))
        await server.start()
        started.append(server)
        return server

    yield factory
    for server in started:
        await server.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> TickerServer:
    return await make_server()


@pytest.fixture
async def spawn_server() -> AsyncIterator[SpawnServer]:
    """Start server processes (tests/servers.py); any still running at teardown is killed."""
    processes = ServerProcesses()
    yield processes.start
    await processes.close()
