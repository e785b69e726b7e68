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

The server is not trusted: every frame passes :mod:`.edge` first, and what it
rejects is counted, logged at most once per reason per ``log_interval`` and
reported as :class:`InputRejected`. The backoff resets only after a connection
stayed live for ``stable_after`` seconds, so a server that greets and hangs up
cannot drive a tight reconnect loop, and a close with 1013 (try again later) or
1008 (policy) waits longer still.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import get_args

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ticker_server.protocol import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    SYMBOL_PATTERN,
    Error,
    ErrorCode,
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
    Ticks,
    Unsubscribe,
    Unsubscribed,
    encode,
)

from .edge import (
    QUIET,
    EdgeLimits,
    Gate,
    LogThrottle,
    Report,
    SequenceGuard,
    believable_info,
    check_hello,
    decode_frame,
    shorten,
)
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
from .redact import MaskedLogger, redact_url, url_secrets
from .retry import Backoff, close_floor, describe_close, describe_error

__all__ = [
    "Backoff",
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
]

log = logging.getLogger("ticker_desktop.client")


class _ProtocolMismatch(Exception):
    """The server is not a protocol v1 ticker_server."""


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
    stable_after: float = 10.0
    """Seconds a connection must stay live before the backoff starts again from its base."""
    retry_later: float = 10.0
    """Seconds added to the backoff after a close with 1013 (try again later)."""
    policy_wait: float = 30.0
    """Seconds added to the backoff after a close with 1008 (policy violation)."""
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    """What the client believes of the server's data (:mod:`.edge`)."""
    max_resume: int = 10_000
    """Ticks of a resume gap accepted per symbol (the server sends what we missed)."""
    log_interval: float = 10.0
    """Seconds between two log lines of one kind of rejected data or server error."""
    token: str | None = field(default=None, repr=False)
    """Bearer token for a server started with --token; sent in the Authorization header,
    never logged (left out of repr, and masked in websockets' debug log)."""
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
        self.shown_url = redact_url(url)
        """The URL as logged and shown: a password or ``?token=`` in it masked."""
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
        self.gate = Gate(
            self.options.limits, self.options.log_interval, self._report, time.time, time.monotonic
        )
        """The edge every frame passes; its ``rejections`` count what was turned away."""
        self._guard = self.gate.guard
        self._epoch: str | None = None
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._requests: dict[RequestId, tuple[str, list[str]]] = {}
        self._waiters: dict[RequestId, asyncio.Future[ServerMessage]] = {}
        self._pings: dict[RequestId, float] = {}
        self._server_errors = LogThrottle(self.options.log_interval, time.monotonic)
        self._live_since: float | None = None
        self._closed_with: tuple[int | None, str] = (None, "")
        self._again = False
        self._wake = asyncio.Event()

    # -- public API ---------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        """The symbols this client wants, in the order they were added."""
        return list(self._wanted)

    @property
    def repeats(self) -> int:
        """Ticks dropped because their seq was not newer than the one held."""
        return self.gate.repeats

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
            self.gate.forget(symbol)
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
            code: int | None = None
            self._live_since = None
            try:
                await self._session()
                code, reason = self._closed_with
                detail = describe_close("connection closed by server", code, reason)
            except ConnectionClosed as exc:
                # rcvd: the server's close; sent alone: ours (e.g. 1009 for a frame too big).
                close = exc.rcvd or exc.sent
                code = close.code if close else 1006
                what = "connection lost" if exc.rcvd or not exc.sent else "we closed the connection"
                detail = describe_close(what, code, close.reason if close else "")
            except (OSError, TimeoutError) as exc:
                detail = describe_error(exc)
            except (InvalidHandshake, InvalidURI, _ProtocolMismatch) as exc:
                detail = describe_error(exc)
                refused = True
            except Exception:
                log.exception("unexpected error in the connection to %s", self.shown_url)
                detail = "internal error"
            self.gate.flush()
            live = self._live_since
            if live is not None and time.monotonic() - live >= self.options.stable_after:
                self.backoff.reset()
            delay = 0.0 if self._again else self.backoff.next_delay(self._floor(code))
            self._again = False
            self._wake.clear()
            detail = shorten(detail, 200)
            log.info("%s: %s; reconnecting in %.2f s", self.shown_url, detail, delay)
            state = ConnectionState.ERROR if refused else ConnectionState.RECONNECTING
            self._set_state(state, detail, retry_in=delay)
            # reconnect() may cut the wait short.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._again = False

    def _floor(self, code: int | None) -> float:
        return close_floor(code, self.options.retry_later, self.options.policy_wait)

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
            logger=MaskedLogger(
                logging.getLogger("websockets.client"), opts.token, *url_secrets(self.url)
            ),
        ) as ws:
            try:
                await self._live(ws)
            finally:
                self._closed_with = (ws.close_code, ws.close_reason or "")

    async def _live(self, ws: ClientConnection) -> None:
        opts = self.options
        try:
            async with asyncio.timeout(opts.open_timeout):
                first = await ws.recv()
        except TimeoutError:
            raise TimeoutError(f"no hello within {opts.open_timeout:g} s") from None
        decoded = decode_frame(first)
        hello = decoded.message
        if not isinstance(hello, Hello):
            got = decoded.message
            why = f"a {got.type} message" if got is not None else decoded.rejected[0][1]
            raise _ProtocolMismatch(f"the server's first message is not a hello: {why}")
        if hello.protocol != PROTOCOL_VERSION:
            raise _ProtocolMismatch(
                f"server speaks protocol {hello.protocol}, not {PROTOCOL_VERSION}"
            )
        wrong = check_hello(hello)
        if wrong is not None:
            raise _ProtocolMismatch(wrong)
        named = [s for s in hello.symbols if SYMBOL_PATTERN.match(s)]
        if len(named) < len(hello.symbols):
            self.gate.reject(
                "bad_symbol", "hello: names that are not symbols", len(hello.symbols) - len(named)
            )
            hello = hello.model_copy(update={"symbols": named})
        rates = [r for r in hello.rates if _is_rate(r)]
        if len(rates) < len(hello.rates):
            self.gate.reject(
                "bad_rate", "hello: rates that are not rates", len(hello.rates) - len(rates)
            )
            hello = hello.model_copy(update={"rates": rates})
        epoch_changed = self._epoch is not None and hello.epoch != self._epoch
        if epoch_changed:
            self._guard.reset()
        self._epoch = hello.epoch
        self.hello = hello
        self._ws = ws
        self._confirmed.clear()
        self.gate.new_connection()
        pinger = asyncio.get_running_loop().create_task(self._ping_loop(ws), name="ticker-ping")
        try:
            self._emit(HelloReceived(hello, epoch_changed))
            self._live_since = time.monotonic()
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
                yield_at = loop.time() + _SLICE
                async for raw in ws:
                    now = loop.time()
                    deadline.reschedule(now + stale_after)
                    decoded = decode_frame(raw)
                    for reason, detail in decoded.rejected:
                        self.gate.reject(reason, detail)
                    if decoded.message is not None:
                        self._dispatch(decoded.message)
                    if now > yield_at:
                        # Queued frames do not suspend recv(): let Qt paint between them.
                        await asyncio.sleep(0)
                        yield_at = loop.time() + _SLICE
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
            self.gate.flush()

    # -- messages -----------------------------------------------------------------

    def _dispatch(self, message: ServerMessage) -> None:
        if isinstance(message, Ticks):
            fresh = self.gate.ticks(message.ticks, self._wanted)
            if fresh:
                self._emit(TicksReceived(fresh))
        elif isinstance(message, Snapshot):
            fresh = self.gate.snapshot(message, self._wanted)
            if fresh:
                self._emit(TicksReceived(fresh, message.symbol))
        elif isinstance(message, Pong):
            sent = self._pings.pop(message.id, None)
            if sent is not None:
                self.rtt = time.monotonic() - sent
                self._emit(LatencyMeasured(self.rtt))
            self._resolve(message.id, message)
        elif isinstance(message, Subscribed | Unsubscribed):
            if isinstance(message, Subscribed):
                granted = message.max_rate
                if granted is not None and not (granted == 0 or _is_rate(granted)):
                    self.gate.reject("bad_rate", f"subscribed: max_rate {granted!r}")
                    granted = None
                self.granted_rate = granted
            self._requests.pop(message.id, None)
            self._confirmed = set(message.symbols)
            self._emit(SubscriptionChanged(message.symbols))
        elif isinstance(message, Symbols):
            infos = [i for i in message.symbols if believable_info(i)]
            if len(infos) < len(message.symbols):
                count = len(message.symbols) - len(infos)
                self.gate.reject("bad_symbol", "symbols: bad names or prices", count)
                message = message.model_copy(update={"symbols": infos})
            self._resolve(message.id, message)
            self._emit(SymbolsListed(message.symbols))
        elif isinstance(message, Error):
            self._on_error(message)

    def _report(self, report: Report) -> None:
        quiet = report.reason in QUIET
        log.log(
            logging.INFO if quiet else logging.WARNING,
            "%s: rejected %d %s from the server (%d in all; every %.0f s at most), e.g. %s",
            self.shown_url,
            report.count,
            report.reason,
            report.total,
            self.options.log_interval,
            report.detail,
        )
        totals = tuple(self.gate.rejections.totals.items())
        self._emit(InputRejected(report.reason, report.count, report.detail, totals, quiet))

    def _on_error(self, error: Error) -> None:
        error = error.model_copy(update={"message": shorten(error.message, 200)})
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
        # An error that answers none of our requests is shown at most once per interval.
        # Keyed by known codes only: a server inventing codes must not grow the throttle.
        key = error.code if error.code in _ERROR_CODES else "unknown_code"
        due = self._server_errors.add(key, error.message)
        if due is not None:
            log.warning(
                "server error %s: %s (%d since the last line)", error.code, error.message, due.count
            )
        if kind is not None or due is not None:
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
            chosen = choose(self.hello.rates, rate)
            rate = chosen if chosen is None or _is_rate(chosen) else rate
        since = self._guard.since(symbols)
        for symbol in symbols:
            resume = self.options.max_resume if symbol in since else 0
            self.gate.expect_snapshot(symbol, max(self.options.snapshot, resume))
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
            raise ConnectionError(f"not connected to {self.shown_url}")
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
        self._emit(StateChanged(state, self.shown_url, detail, retry_in, attempt))

    def _emit(self, event: ClientEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("listener %r failed on %s", listener, type(event).__name__)


_ERROR_CODES = frozenset(get_args(ErrorCode))


def _is_rate(rate: float) -> bool:
    """A rate a request may carry: finite, positive, at most one update a microsecond."""
    return math.isfinite(rate) and 0 < rate <= 1e6


_SLICE = 0.01
"""Seconds of frame handling after which the reader yields to the event loop."""


def _normalise(symbols: Iterable[str]) -> list[str]:
    return [s.strip().upper() for s in symbols if s.strip()]
