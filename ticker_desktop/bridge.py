"""The thin QObject between the asyncio client and the widgets.

Ticks go straight into the :class:`~.store.MarketStore` (no signal per tick:
the frame timer picks changes up); every other client event becomes a Qt
signal, and so does every change of the watched set the client and the store
share. Requests from the widgets are run as tasks this bridge owns, logs the
failures of, and cancels on :meth:`close`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import QObject, Signal

from .client import (
    ClientEvent,
    ConnectionState,
    HelloReceived,
    InputRejected,
    LatencyMeasured,
    ServerError,
    StateChanged,
    SymbolsListed,
    TickerClient,
    TicksReceived,
)
from .history import BarHistory
from .store import MarketStore
from .watched import WatchChange

__all__ = ["ClientBridge"]

log = logging.getLogger("ticker_desktop.bridge")

REQUEST_TIMEOUT = 10.0
"""Seconds to wait for the answer to a request before giving up on it."""


class ClientBridge(QObject):
    """Feeds the store from a :class:`TickerClient` and turns its other events into signals.

    Args:
        client: the connection (not yet started).
        store: where ticks go; it must hold the client's watched set.

    Raises:
        ValueError: the store and the client watch different sets.
    """

    state_changed = Signal(object)
    """A :class:`~.client.StateChanged`."""
    hello_received = Signal(object)
    """The server's :class:`~ticker_server.protocol.Hello`."""
    symbols_listed = Signal(list)
    """``list[SymbolInfo]`` from list_symbols."""
    watched_changed = Signal(list)
    """The symbols the dashboard shows, in order."""
    latency_measured = Signal(float)
    server_error = Signal(object)
    """A :class:`~.client.ServerError`."""
    input_rejected = Signal(object)
    """An :class:`~.client.InputRejected` (at most one per reason per log interval)."""

    def __init__(self, client: TickerClient, store: MarketStore, parent: QObject | None = None):
        super().__init__(parent)
        if store.watched is not client.watched:
            raise ValueError("the store and the client must share one WatchedSymbols")
        self.client = client
        self.store = store
        self.history = BarHistory(store, client.bars)
        """Loads the charts' bars (on open, paging back, and after each reconnect)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._live_once = False
        client.add_listener(self._on_event)
        client.watched.add_listener(self._on_watched)

    @property
    def watched(self) -> list[str]:
        return self.client.watched.symbols

    # -- requests from the widgets -----------------------------------------------------

    def start(self) -> None:
        self.client.start()

    def watch(self, symbols: list[str]) -> None:
        """Add symbols to the dashboard; the client subscribes to them."""
        self.client.watch(symbols)

    def unwatch(self, symbols: list[str]) -> None:
        """Remove symbols from the dashboard; the client unsubscribes."""
        self.client.unwatch(symbols)

    def request_symbols(self) -> None:
        """Ask for the server's symbol list; the answer comes as :attr:`symbols_listed`."""
        self._spawn(self._list_symbols())

    async def _list_symbols(self) -> None:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            await self.client.list_symbols()

    def reconnect(self) -> None:
        self._spawn(self.client.reconnect())

    async def close(self) -> None:
        """Close the client and cancel and await every request task."""
        self.client.remove_listener(self._on_event)
        self.client.watched.remove_listener(self._on_watched)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.history.close()
        await self.client.close()

    # -- events from the client --------------------------------------------------------

    def _on_event(self, event: ClientEvent) -> None:
        if isinstance(event, TicksReceived):
            self.store.ingest(event.ticks, live=event.snapshot is None)
        elif isinstance(event, StateChanged):
            self._on_state(event)
        elif isinstance(event, HelloReceived):
            if event.epoch_changed:
                self.store.new_epoch()
            self.hello_received.emit(event.hello)
        elif isinstance(event, SymbolsListed):
            self.symbols_listed.emit(event.symbols)
        elif isinstance(event, LatencyMeasured):
            self.latency_measured.emit(event.rtt)
        elif isinstance(event, ServerError):
            self.server_error.emit(event)
        elif isinstance(event, InputRejected):
            self.input_rejected.emit(event)

    def _on_state(self, event: StateChanged) -> None:
        if event.state is ConnectionState.LIVE:
            log.info("live: %s", event.url)
            if self._live_once:
                self.store.connection_restored(time.time())
            self._live_once = True
            self.history.refill()
        elif event.state in (ConnectionState.RECONNECTING, ConnectionState.ERROR):
            self.store.connection_lost(time.time())
        self.state_changed.emit(event)

    def _on_watched(self, change: WatchChange) -> None:
        for symbol in change.removed:
            self.history.forget(symbol)
        self.watched_changed.emit(list(change.symbols))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, ConnectionError | TimeoutError):
            log.error("request failed", exc_info=exc)
        elif exc is not None:
            log.info("request not completed: %s", exc)
