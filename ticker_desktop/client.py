"""A Qt-free asyncio client for ticker_server's protocol v1: reconnect, resume, typed events.

:class:`TickerClient` is the facade users call; the work is done in layers, as in
ib_async: :mod:`.connection` (socket, TLS, token, watchdog, reconnect with backoff)
feeds :mod:`.session` (the pure protocol logic: the one seq guard, the epoch, request
ids, resume with ``since``), whose frames pass :mod:`.edge` first and which tells
listeners what happened as the small frozen event classes of :mod:`.events`
(re-exported here). The symbols wanted live in one
:class:`~.watched.WatchedSymbols` that the client, the store and the widgets share.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterable

from ticker_server.protocol import Bars, Hello, SymbolInfo, Symbols

from .bars import BarArrays
from .connection import Connection
from .edge import EdgeLimits, Gate, SequenceGuard
from .events import (
    ClientEvent,
    ConnectionState,
    HelloReceived,
    InputRejected,
    LatencyMeasured,
    Listener,
    RequestFailed,
    ServerError,
    StateChanged,
    SubscriptionChanged,
    SymbolsListed,
    TicksReceived,
)
from .options import ClientOptions
from .redact import redact_url
from .retry import Backoff
from .session import ClientSession
from .watched import WatchedSymbols

__all__ = [
    "Backoff",
    "BarArrays",
    "ClientEvent",
    "ClientOptions",
    "ConnectionState",
    "EdgeLimits",
    "HelloReceived",
    "InputRejected",
    "LatencyMeasured",
    "RequestFailed",
    "SequenceGuard",
    "ServerError",
    "StateChanged",
    "SubscriptionChanged",
    "SymbolsListed",
    "TickerClient",
    "TicksReceived",
    "WatchedSymbols",
]

log = logging.getLogger("ticker_desktop.client")


class TickerClient:
    """Connects to ``url`` and keeps the watched symbols streaming until :meth:`close`.

    Args:
        url: ``ws://HOST:PORT`` (or ``wss://``) of a ticker_server.
        options: timings and request sizes.
        rng: random source for the backoff jitter.
        watched: the symbols to stream, shared with whoever else reads them
            (a new, empty set if not given).
    """

    def __init__(
        self,
        url: str,
        options: ClientOptions | None = None,
        rng: random.Random | None = None,
        watched: WatchedSymbols | None = None,
    ) -> None:
        self.options = options or ClientOptions()
        self.watched = watched if watched is not None else WatchedSymbols()
        """The one set of wanted symbols; editing it (un)subscribes."""
        self._listeners: list[Listener] = []
        self.session = ClientSession(self.options, self.watched, name=redact_url(url))
        self.connection = Connection(url, self.session, self._emit, rng)

    # -- what it knows -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def shown_url(self) -> str:
        """The URL as logged and shown: a password or ``?token=`` in it masked."""
        return self.connection.shown_url

    @property
    def state(self) -> ConnectionState:
        return self.connection.state

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @property
    def backoff(self) -> Backoff:
        return self.connection.backoff

    @property
    def hello(self) -> Hello | None:
        return self.session.hello

    @property
    def rtt(self) -> float | None:
        """Seconds of the last ping's round trip."""
        return self.session.rtt

    @property
    def granted_rate(self) -> float | None:
        """The rate the server last granted to a subscribe (0: unthrottled; None: not said)."""
        return self.session.granted_rate

    @property
    def gate(self) -> Gate:
        """The edge every frame passes; its ``rejections`` count what was turned away."""
        return self.session.gate

    @property
    def symbols(self) -> list[str]:
        """The symbols this client wants, in the order they were added."""
        return self.watched.symbols

    @property
    def repeats(self) -> int:
        """Ticks dropped because their seq was not newer than the one held."""
        return self.session.repeats

    def last_seq(self, symbol: str) -> int | None:
        """The seq of the newest tick delivered for ``symbol``."""
        return self.session.last_seq(symbol)

    # -- listeners ----------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _emit(self, event: ClientEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("listener %r failed on %s", listener, type(event).__name__)

    # -- what it does ---------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (in the running loop); the client reconnects until closed."""
        self.connection.start()

    async def close(self) -> None:
        """Stop for good: cancel the connection task and wait until it has finished."""
        await self.connection.close()

    async def reconnect(self) -> None:
        """Drop the current connection, or cut a backoff wait short, and connect again now."""
        await self.connection.reconnect()

    def watch(self, symbols: Iterable[str]) -> list[str]:
        """Want ``symbols`` from now on (sent soon if live, else on connect); returns the new."""
        return self.session.subscribe(list(symbols))

    def unwatch(self, symbols: Iterable[str]) -> list[str]:
        """Stop wanting ``symbols`` and forget their seqs; returns those that were wanted."""
        return self.session.unsubscribe(list(symbols))

    async def subscribe(self, symbols: Iterable[str]) -> None:
        """Want ``symbols`` from now on; sent before this returns if connected, else on connect."""
        self.watch(symbols)
        await self.connection.flush()

    async def unsubscribe(self, symbols: Iterable[str]) -> None:
        """Stop wanting ``symbols`` and forget their seqs; sent before this returns if connected."""
        self.unwatch(symbols)
        await self.connection.flush()

    async def list_symbols(self) -> list[SymbolInfo]:
        """Ask the server for its symbols (names and last prices); wrap in a timeout as needed.

        Raises:
            ConnectionError: not connected, or the connection dropped meanwhile.
            RequestFailed: the server answered with an error.
        """
        reply = await self.connection.request(self.session.list_symbols())
        assert isinstance(reply, Symbols)
        return reply.symbols

    async def bars(
        self, symbol: str, interval: int, limit: int = 1000, before: int | None = None
    ) -> BarArrays:
        """The server's newest ``limit`` bars of ``symbol`` starting before ``before`` (None: now).

        Every bar is checked at the edge (bad ones are dropped and reported as
        rejections); the frames of the answer come back as one :class:`BarArrays`.

        Raises:
            ConnectionError: not connected, or the connection dropped meanwhile.
            RequestFailed: the server answered with an error.
        """
        rid = self.session.bars(symbol, interval, limit, before)
        reply = await self.connection.request(rid)
        assert isinstance(reply, Bars)
        return BarArrays.from_bars(reply.symbol, reply.interval, reply.bars)
