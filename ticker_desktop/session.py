"""The client's protocol logic without I/O: frames in, typed events and requests out.

As websockets' ``protocol.py`` is to its asyncio layer, :class:`ClientSession` is to
:mod:`.connection`: it holds what one client knows across connections (it reads the
:class:`~.watched.WatchedSymbols`, and holds the one seq guard, the feed's epoch,
request ids and the requests awaiting an answer) and never touches a socket, a loop
or Qt. The connection hands it every frame (:meth:`~ClientSession.receive`) and
sends what :meth:`~ClientSession.data_to_send` returns; listeners get what
:meth:`~ClientSession.events_received` returns. So a recorded session replays
through it in a test, frame by frame, with no server.

On every (re)connection it asks for the whole watched set with ``since`` (the last
seq held per symbol) so the server sends only the ticks that were missed; a new
feed ``epoch`` in the hello means the server's seqs started again, so the held ones
are forgotten first. The server is not trusted: every frame passes :mod:`.edge`
first, and what it rejects is counted, logged at most once per reason per
``log_interval`` and reported as :class:`~.events.InputRejected`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

from ticker_server.protocol import (
    PROTOCOL_VERSION,
    SYMBOL_PATTERN,
    Bars,
    BarsRequest,
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
    Symbols,
    Ticks,
    Unsubscribe,
    Unsubscribed,
    encode,
)

from .bars import BarsAssembly
from .edge import QUIET, Gate, believable_info, check_hello, decode_frame, shorten
from .events import (
    ClientEvent,
    HelloReceived,
    InputRejected,
    LatencyMeasured,
    ServerError,
    SubscriptionChanged,
    SymbolsListed,
    TicksReceived,
)
from .options import ClientOptions, is_rate
from .throttle import LogThrottle, Report
from .watched import WatchChange, WatchedSymbols, normalise

__all__ = ["Answer", "ClientMessage", "ClientSession", "ProtocolMismatch"]

log = logging.getLogger("ticker_desktop.session")

ClientMessage = Subscribe | Unsubscribe | ListSymbols | Ping | BarsRequest
MAX_PINGS = 16
"""Pings awaiting a pong that are remembered; older ones never got one."""


class ProtocolMismatch(Exception):
    """The server is not a protocol v1 ticker_server."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply to an awaited request: the server's message, or the error it gave."""

    id: RequestId
    message: ServerMessage | None = None
    error: Error | None = None


class ClientSession:
    """One client's protocol state across its connections (pure: clocks are injected).

    Args:
        options: request sizes, the rate to ask for and what to believe.
        watched: the symbols wanted; the session follows its changes and asks for them.
        wall: wall clock, for the ``ts`` of ticks.
        monotonic: clock for round trips, seq plausibility and log spacing.
        name: how the server is named in log lines (its URL without secrets).
    """

    def __init__(
        self,
        options: ClientOptions,
        watched: WatchedSymbols,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        name: str = "server",
    ) -> None:
        self.options = options
        self.watched = watched
        self.name = name
        self.hello: Hello | None = None
        self.epoch: str | None = None
        """The feed epoch of the last hello: the seqs held count in it."""
        self.rtt: float | None = None
        self.granted_rate: float | None = None
        """The rate the server last granted to a subscribe (0: unthrottled; None: not said)."""
        self.gate = Gate(options.limits, options.log_interval, self._report, wall, monotonic)
        """The edge every frame passes; it holds the one seq guard, and ``rejections``."""
        self._monotonic = monotonic
        self._live = False
        self._ids = itertools.count(1)
        self._requests: dict[RequestId, tuple[str, list[str]]] = {}
        self._pings: dict[RequestId, float] = {}
        self._confirmed: set[str] = set()
        self._outbox: list[ClientMessage] = []
        self._events: list[ClientEvent] = []
        self._answers: list[Answer] = []
        self._server_errors = LogThrottle(options.log_interval, monotonic)
        self._refusing = False
        self._wanted = watched.view()
        self._wall = wall
        self._assemblies: dict[RequestId, BarsAssembly] = {}
        watched.add_listener(self._on_watched)

    # -- what the connection and the facade read ------------------------------------------

    @property
    def live(self) -> bool:
        """Between a believed hello and the end of its connection."""
        return self._live

    @property
    def repeats(self) -> int:
        """Ticks dropped because their seq was not newer than the one held."""
        return self.gate.repeats

    @property
    def pending(self) -> dict[RequestId, str]:
        """Requests sent on this connection and not answered yet, by id: their kind."""
        return {rid: kind for rid, (kind, _) in self._requests.items()}

    def last_seq(self, symbol: str) -> int | None:
        """The seq of the newest tick believed for ``symbol``."""
        return self.gate.guard.last_seq(symbol)

    def stale_after(self) -> float:
        """Seconds of silence after which the connection counts as dead."""
        heartbeat = self.hello.heartbeat if self.hello is not None else 0.0
        return self.options.stale_after or 3.0 * max(heartbeat, self.options.ping_interval)

    def rate(self) -> float | None:
        """The max_rate to ask for: ours under the server's cap, or one of the rates it grants."""
        cap = self.hello.max_rate if self.hello is not None else 0.0
        rate = self.options.max_rate
        if rate is not None and cap > 0:
            rate = min(rate, cap)
        choose = self.options.choose_rate
        if choose is not None and self.hello is not None and self.hello.rates:
            chosen = choose(self.hello.rates, rate)
            rate = chosen if chosen is None or is_rate(chosen) else rate
        return rate

    def data_to_send(self) -> list[str]:
        """The requests due, encoded, in order; each is handed out once."""
        out, self._outbox = self._outbox, []
        return [encode(message).decode() for message in out]

    def events_received(self) -> list[ClientEvent]:
        """Events for the listeners since the last call, in order."""
        events, self._events = self._events, []
        return events

    def answers_received(self) -> list[Answer]:
        """Replies to awaited requests since the last call."""
        answers, self._answers = self._answers, []
        return answers

    # -- what the connection and the facade tell it -----------------------------------------

    def open(self, frame: str | bytes) -> None:
        """A connection's first frame, which must be a believable v1 hello; asks for the watched.

        Raises:
            ProtocolMismatch: the frame is not such a hello.
        """
        decoded = decode_frame(frame)
        hello = decoded.message
        if not isinstance(hello, Hello):
            why = f"a {hello.type} message" if hello is not None else decoded.rejected[0][1]
            raise ProtocolMismatch(f"the server's first message is not a hello: {why}")
        if hello.protocol != PROTOCOL_VERSION:
            why = f"server speaks protocol {hello.protocol}, not {PROTOCOL_VERSION}"
            raise ProtocolMismatch(why)
        wrong = check_hello(hello)
        if wrong is not None:
            raise ProtocolMismatch(wrong)
        named = [s for s in hello.symbols if SYMBOL_PATTERN.match(s)]
        if len(named) < len(hello.symbols):
            bad = len(hello.symbols) - len(named)
            self.gate.reject("bad_symbol", "hello: names that are not symbols", bad)
            hello = hello.model_copy(update={"symbols": named})
        rates = [r for r in hello.rates if is_rate(r)]
        if len(rates) < len(hello.rates):
            bad = len(hello.rates) - len(rates)
            self.gate.reject("bad_rate", "hello: rates that are not rates", bad)
            hello = hello.model_copy(update={"rates": rates})
        epoch_changed = self.epoch is not None and hello.epoch != self.epoch
        if epoch_changed:
            self.gate.guard.reset()
        self.epoch = hello.epoch
        self.hello = hello
        self._confirmed.clear()
        self.gate.new_connection()
        self._live = True
        self._events.append(HelloReceived(hello, epoch_changed))
        if self.watched:
            self._outbox.append(self._subscribe_message(list(self.watched)))

    def closed(self) -> None:
        """The connection ended: nothing sent on it will be answered."""
        self._live = False
        self._requests.clear()
        self._assemblies.clear()
        self._pings.clear()
        self._outbox.clear()
        self.gate.flush()

    def receive(self, frame: str | bytes) -> None:
        """One frame from the server, after the hello."""
        decoded = decode_frame(frame)
        for reason, detail in decoded.rejected:
            self.gate.reject(reason, detail)
        if decoded.message is not None:
            self._dispatch(decoded.message)

    def subscribe(self, symbols: list[str]) -> list[str]:
        """Watch ``symbols`` too (asked for now if live, else on connect); returns the new ones."""
        return self.watched.add(symbols)

    def unsubscribe(self, symbols: list[str]) -> list[str]:
        """Stop watching ``symbols`` and forget their seqs; returns those that were watched."""
        return self.watched.remove(symbols)

    def list_symbols(self) -> RequestId:
        """Ask for the server's symbols; the reply comes as an :class:`Answer` with this id.

        Raises:
            ConnectionError: not connected.
        """
        if not self._live:
            raise ConnectionError(f"not connected to {self.name}")
        rid = self._request("list_symbols", [])
        self._outbox.append(ListSymbols(type="list_symbols", id=rid))
        return rid

    def bars(self, symbol: str, interval: int, limit: int, before: int | None = None) -> RequestId:
        """Ask for ``symbol``'s bars; the checked, assembled answer comes as one :class:`Answer`.

        Raises:
            ConnectionError: not connected.
        """
        if not self._live:
            raise ConnectionError(f"not connected to {self.name}")
        rid = self._request("bars", [symbol])
        self._assemblies[rid] = BarsAssembly(symbol, interval)
        self._outbox.append(
            BarsRequest(
                type="bars", symbol=symbol, interval=interval, limit=limit, before=before, id=rid
            )
        )
        return rid

    def ping(self) -> None:
        """Time a round trip (when live), and release rejection reports held back meanwhile."""
        if self._live:
            rid = next(self._ids)
            self._pings[rid] = self._monotonic()
            if len(self._pings) > MAX_PINGS:
                del self._pings[next(iter(self._pings))]
            self._outbox.append(Ping(type="ping", id=rid))
        self.gate.flush()

    # -- inside ------------------------------------------------------------------------------

    def _on_watched(self, change: WatchChange) -> None:
        for symbol in change.removed:
            self.gate.forget(symbol)
        if self._refusing or not self._live:
            return  # what the server refused is not unsubscribed; a new connection asks anew
        if change.added:
            self._outbox.append(self._subscribe_message(list(change.added)))
        if change.removed:
            gone = list(change.removed)
            rid = self._request("unsubscribe", gone)
            self._outbox.append(Unsubscribe(type="unsubscribe", symbols=gone, id=rid))

    def _dispatch(self, message: ServerMessage) -> None:
        if isinstance(message, Ticks):
            fresh = self.gate.ticks(message.ticks, self._wanted)
            if fresh:
                self._events.append(TicksReceived(fresh))
        elif isinstance(message, Snapshot):
            fresh = self.gate.snapshot(message, self._wanted)
            if fresh:
                self._events.append(TicksReceived(fresh, message.symbol))
        elif isinstance(message, Pong):
            sent = self._pings.pop(message.id, None)
            if sent is not None:
                self.rtt = self._monotonic() - sent
                self._events.append(LatencyMeasured(self.rtt))
        elif isinstance(message, Subscribed | Unsubscribed):
            if isinstance(message, Subscribed):
                granted = message.max_rate
                if granted is not None and not (granted == 0 or is_rate(granted)):
                    self.gate.reject("bad_rate", f"subscribed: max_rate {granted!r}")
                    granted = None
                self.granted_rate = granted
            self._requests.pop(message.id, None)
            self._confirmed = set(message.symbols)
            self._events.append(SubscriptionChanged(message.symbols))
        elif isinstance(message, Symbols):
            infos = [i for i in message.symbols if believable_info(i)]
            if len(infos) < len(message.symbols):
                count = len(message.symbols) - len(infos)
                self.gate.reject("bad_symbol", "symbols: bad names or prices", count)
                message = message.model_copy(update={"symbols": infos})
            if self._requests.pop(message.id, None) is not None:
                self._answers.append(Answer(message.id, message))
            self._events.append(SymbolsListed(message.symbols))
        elif isinstance(message, Bars):
            self._on_bars(message)
        elif isinstance(message, Error):
            self._on_error(message)

    def _on_bars(self, frame: Bars) -> None:
        """One frame of a bars answer: judged bar by bar; the answer goes out when done."""
        assembly = self._assemblies.get(frame.id)
        if assembly is None:
            self.gate.reject("unasked", f"bars of {shorten(frame.symbol, 20)}, not asked for")
            return
        done = assembly.add(frame, self._wall(), self.options.limits)
        for reason, detail in assembly.rejected:
            self.gate.reject(reason, detail)
        assembly.rejected.clear()
        if done:
            del self._assemblies[frame.id]
            self._requests.pop(frame.id, None)
            whole = Bars(symbol=assembly.symbol, interval=assembly.interval, bars=assembly.bars)
            self._answers.append(Answer(frame.id, whole.model_copy(update={"id": frame.id})))

    def _on_error(self, error: Error) -> None:
        error = error.model_copy(update={"message": shorten(error.message, 200)})
        kind, symbols = self._requests.pop(error.id, (None, []))
        self._assemblies.pop(error.id, None)
        dropped: list[str] = []
        if kind == "subscribe":
            refused = error.symbols if error.code == "unknown_symbol" and error.symbols else symbols
            unconfirmed = [s for s in normalise(refused) if s not in self._confirmed]
            self._refusing = True
            try:
                dropped = self.watched.remove(unconfirmed)
            finally:
                self._refusing = False
        elif kind is not None:
            self._answers.append(Answer(error.id, error=error))
        # An error that answers none of our requests is shown at most once per interval.
        # Keyed by known codes only: a server inventing codes must not grow the throttle.
        key = error.code if error.code in _ERROR_CODES else "unknown_code"
        due = self._server_errors.add(key, error.message)
        if due is not None:
            log.warning(
                "server error %s: %s (%d since the last line)", error.code, error.message, due.count
            )
        if kind is not None or due is not None:
            self._events.append(ServerError(error, kind, dropped))

    def _report(self, report: Report) -> None:
        quiet = report.reason in QUIET
        log.log(
            logging.INFO if quiet else logging.WARNING,
            "%s: rejected %d %s from the server (%d in all; every %.0f s at most), e.g. %s",
            self.name,
            report.count,
            report.reason,
            report.total,
            self.options.log_interval,
            report.detail,
        )
        totals = tuple(self.gate.rejections.totals.items())
        rejected = InputRejected(report.reason, report.count, report.detail, totals, quiet)
        self._events.append(rejected)

    def _request(self, kind: str, symbols: list[str]) -> RequestId:
        rid = next(self._ids)
        self._requests[rid] = (kind, symbols)
        return rid

    def _subscribe_message(self, symbols: list[str]) -> Subscribe:
        since = self.gate.guard.since(symbols)
        for symbol in symbols:
            resume = self.options.max_resume if symbol in since else 0
            self.gate.expect_snapshot(symbol, max(self.options.snapshot, resume))
        return Subscribe(
            type="subscribe",
            symbols=symbols,
            max_rate=self.rate(),
            snapshot=self.options.snapshot,
            since=since or None,
            id=self._request("subscribe", symbols),
        )


_ERROR_CODES = frozenset(get_args(ErrorCode))
