"""Desktop test fixtures: Qt offscreen, a qasync loop for window tests, real servers on port 0."""

from __future__ import annotations

import os

# Before anything imports Qt: no display in tests.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest

from ticker_desktop.client import ClientEvent, ClientOptions, TickerClient
from ticker_server.app import TickerServer

TIMEOUT = float(os.environ.get("TICKER_TEST_TIMEOUT", "10"))
"""Upper bound for any single wait in a test; raise it on a slow machine."""

FAST = ClientOptions(
    ping_interval=0.2, open_timeout=2.0, close_timeout=0.5, backoff_base=0.05, backoff_cap=0.2
)
"""Client timings for tests: quick pings and reconnects."""

E = TypeVar("E")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "qt_loop: run this async test on a qasync (Qt) event loop")


def _qt_event_loop() -> asyncio.AbstractEventLoop:
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    # As in the app: closing the last window must not stop the loop under a running test.
    app.setQuitOnLastWindowClosed(False)
    loop: asyncio.AbstractEventLoop = qasync.QEventLoop(app)
    return loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Window tests run on Qt's event loop through qasync, like the app; the rest on asyncio's."""
    if item.get_closest_marker("qt_loop"):
        return {"qt": _qt_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(autouse=True)
def no_logged_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test whose code logged an error (a lost exception, a pending task destroyed)."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(("ticker", "asyncio", "qasync"))
    ]
    assert not errors, "logged errors:\n" + "\n".join(r.getMessage() for r in errors)


async def until(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Wait (without blocking the loop) until ``predicate()`` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


class EventLog:
    """Records a client's events and lets a test await one that matches."""

    def __init__(self, client: TickerClient) -> None:
        self.events: list[ClientEvent] = []
        self._arrived = asyncio.Event()
        client.add_listener(self._on_event)

    def _on_event(self, event: ClientEvent) -> None:
        self.events.append(event)
        self._arrived.set()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(
        self,
        kind: type[E],
        where: Callable[[E], bool] = lambda e: True,
        start: int = 0,
        timeout: float = TIMEOUT,
    ) -> E:
        """The first event of ``kind`` at or after index ``start`` that satisfies ``where``."""
        async with asyncio.timeout(timeout):
            index = start
            while True:
                while index < len(self.events):
                    event = self.events[index]
                    index += 1
                    if isinstance(event, kind) and where(event):
                        return event
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
def server_defaults() -> dict[str, Any]:
    """Fast ticks, a fixed seed, the default rate cap and quick heartbeats."""
    return {
        "host": "127.0.0.1",
        "port": 0,
        "tick_rate": 20.0,
        "seed": 11,
        "max_rate": 50.0,
        "heartbeat": 1.0,
    }


@pytest.fixture
async def client(server: TickerServer) -> AsyncIterator[TickerClient]:
    """A started client on the server with test timings; closed at teardown."""
    client = TickerClient(server.url, FAST)
    client.start()
    yield client
    await client.close()
