"""A Qt-free asyncio client for ticker_server's protocol v1: reconnect, resume, typed events.

:class:`TickerClient` owns one task that connects, reads the hello, (re)subscribes
the wanted symbols, and then reads until the connection drops, after which it
waits with :class:`Backoff` and tries again. Everything it learns is handed to
listeners as one of the small frozen event classes of :mod:`.events` (re-exported
here); nothing past :func:`~ticker_server.protocol.decode_server_message` sees a dict.

On every reconnect the subscribe carries ``since`` (the last seq held per
symbol) so the server sends only the ticks that were missed; a tick whose seq
is not newer than the one held is dropped. A new feed ``epoch`` in the hello
means the server's seqs started again, so what is held is forgotten first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ticker_server.protocol import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    Error,
    Hello,
    ListSymbols,
    Ping,
    Pong,
    RequestId,
    ServerMessage,
    Snapshot,
    Subscribe,
    Subscribed,
    SymbolInfo,
    Symbols,
    Tick,
    Ticks,
    Unsubscribe,
    Unsubscribed,
    decode_server_message,
    encode,
)

from .events import (
    ClientEvent,
    ConnectionState,
    HelloReceived,
    LatencyMeasured,
    Listener,
    RequestFailed,
    ServerError,
    StateChanged,
    SubscriptionChanged,
    SymbolsListed,
    TicksReceived,
)

__all__ = [
    "Backoff",
    "ClientEvent",
    "ClientOptions",
    "ConnectionState",
    "HelloReceived",
    "LatencyMeasured",
    "RequestFailed",
    "SequenceGuard",
    "ServerError",
    "StateChanged",
    "SubscriptionChanged",
    "SymbolsListed",
    "TickerClient",
    "TicksReceived",
]

log = logging.getLogger("ticker_desktop.client")


class _ProtocolMismatch(Exception):
    """The server is not a protocol v1 ticker_server."""


# ------------------------------------------------------------------ pure helpers


class Backoff:
    """Exponential backoff with full jitter: delay n is uniform in [0, min(cap, base * 2**n)].

    Args:
        base: ceiling of the first delay, in seconds.
        cap: largest ceiling.
        rng: random source, injected for tests.
    """

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The largest delay the next call can return."""
        return min(self.cap, self.base * 2.0 ** min(self.attempt, 64))

    def next_delay(self) -> float:
        delay = self._rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class SequenceGuard:
    """The last seq held per symbol; a tick that is not newer is a repeat and is dropped."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def accept(self, symbol: str, seq: int) -> bool:
        """Record the tick and return True if it is newer than what is held."""
        if seq <= self._last.get(symbol, 0):
            return False
        self._last[symbol] = seq
        return True

    def last_seq(self, symbol: str) -> int | None:
        return self._last.get(symbol)

    def since(self, symbols: Iterable[str]) -> dict[str, int]:
        """The ``since`` map of a resuming subscribe."""
        return {s: self._last[s] for s in symbols if s in self._last}

    def forget(self, symbol: str) -> None:
        self._last.pop(symbol, None)

    def reset(self) -> None:
        """Forget everything (the server's feed restarted and its seqs with it)."""
        self._last.clear()


# ------------------------------------------------------------------------ client


@dataclass(frozen=True)
class ClientOptions:
    """How the client talks to the server; every field has a default that suits the dashboard."""

    max_rate: float | None = 60.0
    """Updates per second per symbol to ask for (one per painted frame); None: the server's cap."""
    choose_rate: Callable[[list[float], float | None], float | None] | None = None
    """Picks the max_rate to ask for from the rates a server grants (its hello's ``rates``)
    and :attr:`max_rate` under the server's cap; unused against a server that lists none."""
    snapshot: int = 1000
    """Ticks of history to ask for with a new subscription."""
    ping_interval: float = 2.0
    """Seconds between RTT pings."""
    stale_after: float | None = None
    """Seconds of silence after which the connection is dropped; None: 3x the heartbeat."""
    open_timeout: float = 5.0
    close_timeout: float = 1.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    token: str | None = None
    """Bearer token for a server started with --token; sent in the Authorization header."""
    cafile: str | None = None
    """PEM file of a private CA to trust for wss:// (default: the system's trust store)."""

    def ssl_context(self, url: str) -> ssl.SSLContext | None:
        """The TLS settings for ``url``: None for ws://."""
        if not url.startswith("wss://"):
            return None
        return ssl.create_default_context(cafile=self.cafile)


class TickerClient:
    """Connects to ``url`` and keeps the wanted symbols streaming until :meth:`close`.

    Args:
        url: ``ws://HOST:PORT`` of a ticker_server.
        options: timings and request sizes.
        rng: random source for the backoff jitter.
    """

    def __init__(
        self, url: str, options: ClientOptions | None = None, rng: random.Random | None = None
    ) -> None:
        self.url = url
        self.options = options or ClientOptions()
        self.state = ConnectionState.IDLE
        self.hello: Hello | None = None
        self.rtt: float | None = None
        self.granted_rate: float | None = None
        """The rate the server last granted to a subscribe (0: unthrottled; None: not said)."""
        self.backoff = Backoff(self.options.backoff_base, self.options.backoff_cap, rng)
        self._listeners: list[Listener] = []
        self._wanted: dict[str, None] = {}  # insertion-ordered set
        self._confirmed: set[str] = set()
        self._guard = SequenceGuard()
        self._epoch: str | None = None
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._requests: dict[RequestId, tuple[str, list[str]]] = {}
        self._waiters: dict[RequestId, asyncio.Future[ServerMessage]] = {}
        self._pings: dict[RequestId, float] = {}
        self.repeats = 0
        """Ticks dropped because their seq was not newer than the one held."""
        self._again = False
        self._wake = asyncio.Event()

    # -- public API ---------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        """The symbols this client wants, in the order they were added."""
        return list(self._wanted)

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def last_seq(self, symbol: str) -> int | None:
        """The seq of the newest tick delivered for ``symbol``."""
        return self._guard.last_seq(symbol)

    def start(self) -> None:
        """Start connecting (in the running loop); the client reconnects until closed."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ticker-client")

    async def close(self) -> None:
        """Stop for good: cancel the connection task and wait until it has finished."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_waiters(ConnectionError("client closed"))
        self._set_state(ConnectionState.CLOSED)

    async def reconnect(self) -> None:
        """Drop the current connection, or cut a backoff wait short, and connect again now."""
        self._again = True
        self._wake.set()
        ws = self._ws
        if ws is not None:
            await ws.close(1000, "reconnecting")

    async def subscribe(self, symbols: Iterable[str]) -> None:
        """Want ``symbols`` from now on; sent at once if connected, else on connect."""
        new = [s for s in dict.fromkeys(_normalise(symbols)) if s not in self._wanted]
        for symbol in new:
            self._wanted[symbol] = None
        if new and self._ws is not None:
            await self._send(self._subscribe_message(new))

    async def unsubscribe(self, symbols: Iterable[str]) -> None:
        """Stop wanting ``symbols`` and forget their seqs."""
        gone = [s for s in dict.fromkeys(_normalise(symbols)) if s in self._wanted]
        for symbol in gone:
            del self._wanted[symbol]
            self._guard.forget(symbol)
        if gone and self._ws is not None:
            await self._send(
                Unsubscribe(type="unsubscribe", symbols=gone, id=self._request("unsubscribe", gone))
            )

    async def list_symbols(self) -> list[SymbolInfo]:
        """Ask the server for its symbols (names and last prices); wrap in a timeout as needed.

        Raises:
            ConnectionError: not connected, or the connection dropped meanwhile.
            RequestFailed: the server answered with an error.
        """
        reply = await self._ask(ListSymbols(type="list_symbols", id=next(self._ids)))
        assert isinstance(reply, Symbols)
        return reply.symbols

    # -- the connection loop --------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._set_state(ConnectionState.CONNECTING, attempt=self.backoff.attempt)
            refused = False
            try:
                await self._session()
                detail = "connection closed by server"
            except ConnectionClosed as exc:
                detail = f"connection lost (code {exc.rcvd.code if exc.rcvd else 1006})"
            except (OSError, TimeoutError) as exc:
                detail = _describe(exc)
            except (InvalidHandshake, InvalidURI, _ProtocolMismatch) as exc:
                detail = _describe(exc)
                refused = True
            except Exception:
                log.exception("unexpected error in the connection to %s", self.url)
                detail = "internal error"
            delay = 0.0 if self._again else self.backoff.next_delay()
            self._again = False
            self._wake.clear()
            log.info("%s: %s; reconnecting in %.2f s", self.url, detail, delay)
            state = ConnectionState.ERROR if refused else ConnectionState.RECONNECTING
            self._set_state(state, detail, retry_in=delay)
            # reconnect() may cut the wait short.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._again = False

    async def _session(self) -> None:
        opts = self.options
        async with connect(
            self.url,
            open_timeout=opts.open_timeout,
            close_timeout=opts.close_timeout,
            max_size=MAX_FRAME,
            compression=None,
            additional_headers={"Authorization": f"Bearer {opts.token}"} if opts.token else None,
            ssl=opts.ssl_context(self.url),
        ) as ws:
            async with asyncio.timeout(opts.open_timeout):
                first = await ws.recv()
            try:
                hello = decode_server_message(first)
            except ValueError as exc:  # includes pydantic's ValidationError
                raise _ProtocolMismatch(
                    f"the server's first message is not a hello: {exc}"
                ) from None
            if not isinstance(hello, Hello):
                raise _ProtocolMismatch("the server did not start with a hello")
            if hello.protocol != PROTOCOL_VERSION:
                raise _ProtocolMismatch(
                    f"server speaks protocol {hello.protocol}, not {PROTOCOL_VERSION}"
                )
            epoch_changed = self._epoch is not None and hello.epoch != self._epoch
            if epoch_changed:
                self._guard.reset()
            self._epoch = hello.epoch
            self.hello = hello
            self._ws = ws
            self._confirmed.clear()
            self.backoff.reset()
            pinger = asyncio.get_running_loop().create_task(self._ping_loop(ws), name="ticker-ping")
            try:
                self._emit(HelloReceived(hello, epoch_changed))
                self._set_state(ConnectionState.LIVE)
                if self._wanted:
                    await self._send(self._subscribe_message(list(self._wanted)))
                stale_after = opts.stale_after or 3.0 * max(hello.heartbeat, opts.ping_interval)
                await self._read(ws, stale_after)
            finally:
                self._ws = None
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
                self._fail_waiters(ConnectionError("connection lost"))
                self._requests.clear()
                self._pings.clear()

    async def _read(self, ws: ClientConnection, stale_after: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(stale_after) as deadline:
                async for raw in ws:
                    deadline.reschedule(loop.time() + stale_after)
                    try:
                        message = decode_server_message(raw)
                    except ValueError as exc:
                        log.warning("ignoring a malformed message from %s: %s", self.url, exc)
                        continue
                    if message is not None:
                        self._dispatch(message)
        except TimeoutError:
            raise TimeoutError(f"no message for {stale_after:.0f} s (stale connection)") from None

    async def _ping_loop(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.options.ping_interval)
            rid = next(self._ids)
            self._pings[rid] = time.monotonic()
            if len(self._pings) > 16:  # pongs that never came
                del self._pings[next(iter(self._pings))]
            with contextlib.suppress(ConnectionClosed):
                await ws.send(encode(Ping(type="ping", id=rid)).decode())

    # -- messages -----------------------------------------------------------------

    def _dispatch(self, message: ServerMessage) -> None:
        if isinstance(message, Ticks):
            fresh = [t for t in message.ticks if t.symbol in self._wanted and self._accept(t)]
            if fresh:
                self._emit(TicksReceived(fresh))
        elif isinstance(message, Snapshot):
            if message.symbol in self._wanted:
                self._emit(
                    TicksReceived([t for t in message.ticks if self._accept(t)], message.symbol)
                )
        elif isinstance(message, Pong):
            sent = self._pings.pop(message.id, None)
            if sent is not None:
                self.rtt = time.monotonic() - sent
                self._emit(LatencyMeasured(self.rtt))
            self._resolve(message.id, message)
        elif isinstance(message, Subscribed | Unsubscribed):
            if isinstance(message, Subscribed):
                self.granted_rate = message.max_rate
            self._requests.pop(message.id, None)
            self._confirmed = set(message.symbols)
            self._emit(SubscriptionChanged(message.symbols))
        elif isinstance(message, Symbols):
            self._resolve(message.id, message)
            self._emit(SymbolsListed(message.symbols))
        elif isinstance(message, Error):
            self._on_error(message)

    def _accept(self, tick: Tick) -> bool:
        if self._guard.accept(tick.symbol, tick.seq):
            return True
        self.repeats += 1
        return False

    def _on_error(self, error: Error) -> None:
        kind, symbols = self._requests.pop(error.id, (None, []))
        dropped: list[str] = []
        if kind == "subscribe":
            refused = error.symbols if error.code == "unknown_symbol" and error.symbols else symbols
            for symbol in _normalise(refused):
                if symbol in self._wanted and symbol not in self._confirmed:
                    del self._wanted[symbol]
                    dropped.append(symbol)
        waiter = self._waiters.pop(error.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(RequestFailed(error))
            kind = kind or "request"
        log.warning("server error %s: %s", error.code, error.message)
        self._emit(ServerError(error, kind, dropped))

    def _resolve(self, rid: RequestId, message: ServerMessage) -> None:
        waiter = self._waiters.pop(rid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    # -- plumbing -----------------------------------------------------------------

    def _request(self, kind: str, symbols: list[str]) -> int:
        rid = next(self._ids)
        self._requests[rid] = (kind, symbols)
        return rid

    def _subscribe_message(self, symbols: list[str]) -> Subscribe:
        cap = self.hello.max_rate if self.hello is not None else 0.0
        rate = self.options.max_rate
        if rate is not None and cap > 0:
            rate = min(rate, cap)
        choose = self.options.choose_rate
        if choose is not None and self.hello is not None and self.hello.rates:
            rate = choose(self.hello.rates, rate)
        since = self._guard.since(symbols)
        return Subscribe(
            type="subscribe",
            symbols=symbols,
            max_rate=rate,
            snapshot=self.options.snapshot,
            since=since or None,
            id=self._request("subscribe", symbols),
        )

    async def _send(self, message: Subscribe | Unsubscribe | ListSymbols | Ping) -> None:
        ws = self._ws
        if ws is None:
            return
        # A send on a dropping connection is not an error: the reconnect resubscribes.
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode(message).decode())

    async def _ask(self, message: ListSymbols | Ping) -> ServerMessage:
        if self._ws is None:
            raise ConnectionError(f"not connected to {self.url}")
        waiter: asyncio.Future[ServerMessage] = asyncio.get_running_loop().create_future()
        self._waiters[message.id] = waiter
        try:
            await self._send(message)
            return await waiter
        finally:
            self._waiters.pop(message.id, None)

    def _fail_waiters(self, exc: Exception) -> None:
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(exc)

    def _set_state(
        self,
        state: ConnectionState,
        detail: str = "",
        retry_in: float | None = None,
        attempt: int = 0,
    ) -> None:
        self.state = state
        self._emit(StateChanged(state, self.url, detail, retry_in, attempt))

    def _emit(self, event: ClientEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("listener %r failed on %s", listener, type(event).__name__)


def _normalise(symbols: Iterable[str]) -> list[str]:
    return [s.strip().upper() for s in symbols if s.strip()]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return text
