"""Property-based fuzzing of the request schema against a real server on one connection."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from ticker_server.app import TickerServer
from ticker_server.config import ServerConfig
from ticker_server.protocol import decode_server_message

from .conftest import TIMEOUT

KNOWN = ["AAPL", "MSFT", "NVDA", "aapl", "TSLA"]
ERROR_CODES = {"bad_request", "unknown_type", "unknown_symbol", "too_many_symbols"}

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
symbols = st.lists(st.sampled_from(KNOWN) | st.text(max_size=14), max_size=6)
maybe = st.sampled_from([True, False])


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed requests with some fields replaced by arbitrary JSON."""
    kind = draw(
        st.sampled_from(["subscribe", "unsubscribe", "list_symbols", "ping"]) | st.text(max_size=12)
    )
    request: dict[str, Any] = {"type": kind}
    if draw(maybe):
        request["symbols"] = draw(symbols | json_values)
    if draw(maybe):
        request["max_rate"] = draw(st.floats(0.01, 100) | json_values)
    if draw(maybe):
        request["snapshot"] = draw(st.integers(0, 5) | json_values)
    if draw(maybe):
        request["since"] = draw(
            st.dictionaries(st.sampled_from(KNOWN), st.integers(-5, 10**6)) | json_values
        )
    if draw(maybe):
        request[draw(st.text(max_size=6))] = draw(json_values)
    return request


class ThreadedServer:
    """A real TickerServer on port 0 in a thread with its own event loop, for the sync client."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with TickerServer(self.config) as server:
            self.url = server.url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        assert self._ready.wait(TIMEOUT * 2), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT * 2)
        self._loop.close()


@pytest.fixture(scope="module")
def connection() -> Iterator[ClientConnection]:
    config = ServerConfig(
        port=0, tick_rate=20.0, seed=3, request_rate=1e6, request_burst=1e6, max_symbols=4
    )
    with ThreadedServer(config) as server, connect(server.url, max_size=None) as ws:
        ws.recv(TIMEOUT)  # hello
        yield ws


sync_counter = iter(range(10**9))


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(requests(), min_size=1, max_size=8))
def test_fuzzed_requests_keep_the_connection_healthy(
    connection: ClientConnection, batch: list[dict[str, Any]]
) -> None:
    """Any request gets well-formed replies or documented errors, and the connection stays usable."""
    for request in batch:
        connection.send(json.dumps(request, allow_nan=True))
    marker = f"sync-{next(sync_counter)}"
    connection.send(json.dumps({"type": "ping", "id": marker}))
    while True:
        raw = connection.recv(TIMEOUT)
        message = decode_server_message(raw)
        assert message is not None, raw
        if message.type == "error":
            assert message.code in ERROR_CODES, message
            assert message.message
        if message.type == "ticks":
            assert all(t.seq >= 1 and t.bid < t.ask for t in message.ticks)
        if message.type == "subscribed":
            assert len(message.symbols) <= 4
        if message.type == "pong" and message.id == marker:
            break
