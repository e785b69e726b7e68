"""Real servers on port 0 and real WebSocket clients for the server tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from ticker_server.gateway import Gateway
from ticker_server.protocol import ServerMessage, decode_server_message

from ..conftest import ServerFactory
from ..timing import MS, TIMEOUT

__all__ = ["MS", "TIMEOUT", "Peer", "PeerFactory", "ServerFactory", "until"]


async def until(gateway: Gateway, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` holds, checking it at each change the gateway announces."""
    async with asyncio.timeout(timeout):
        while not predicate():
            gateway.changed.clear()
            await gateway.changed.wait()


class Peer:
    """A protocol v1 client for tests: typed receive with a deadline."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout: float = TIMEOUT) -> ServerMessage:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        message = decode_server_message(raw)
        assert message is not None, f"unknown message type: {raw!r}"
        return message

    async def expect(self, kind: str, timeout: float = TIMEOUT) -> Any:
        """Receive until a message of ``kind`` arrives; ticks and heartbeats before it are skipped."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if message.type == kind:
                    return message


PeerFactory = Callable[..., Awaitable[Peer]]


@pytest.fixture
def server_defaults() -> dict[str, Any]:
    """Fast ticks, a fixed seed and no rate cap, so tests see plenty of ticks quickly."""
    return {"host": "127.0.0.1", "port": 0, "tick_rate": 50.0, "seed": 7, "max_rate": 0.0}


@pytest.fixture
async def make_peer() -> AsyncIterator[PeerFactory]:
    """Connect real clients; the hello is consumed and checked; all close at teardown."""
    peers: list[Peer] = []

    async def factory(url: str, **kwargs: Any) -> Peer:
        # An unbounded queue: a test that stops reading must not stall the close handshake.
        kwargs.setdefault("max_queue", None)
        kwargs.setdefault("max_size", None)
        ws = await connect(url, **kwargs)
        peer = Peer(ws)
        peers.append(peer)
        hello = await peer.recv()
        assert hello.type == "hello"
        return peer

    yield factory
    for peer in peers:
        await peer.ws.close()
