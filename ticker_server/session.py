"""One client's requests, answered without I/O: text in, replies and subscription changes out.

As websockets' ``protocol.py`` is to its connections, :class:`Session` is to
ours: it decodes a request, applies the limits (request rate, abuse, symbols per
connection, requests held while the client is not reading) and says what to do
in an :class:`Outcome` - frames to write, symbols to (un)subscribe, a close.
The gateway applies the outcome; tests replay recorded requests through a
session with no socket and no event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from .bars import BarStore
from .bars_answer import BarsAnswer, EncodedRuns, start_answer
from .conflation import SymbolBook
from .limits import TokenBucket
from .protocol import (
    MAX_FRAME,
    BarsRequest,
    Error,
    ListSymbols,
    Ping,
    Pong,
    ProtocolError,
    Subscribe,
    Subscribed,
    SymbolInfo,
    Symbols,
    Unsubscribe,
    Unsubscribed,
    decode_request,
    encode,
    grant_rate,
)

__all__ = [
    "ABUSE_LIMIT",
    "CLOSE_POLICY",
    "MAX_DEFERRED",
    "MAX_PIPELINED",
    "MarketView",
    "Outcome",
    "Session",
    "snapshot_frames",
]

log = logging.getLogger("ticker_server.session")

CLOSE_POLICY = 1008
ABUSE_LIMIT = 100
"""Refused requests in a row after which a client is closed with 1008."""
MAX_DEFERRED = 8
"""Requests held, unanswered, for a client above the buffer limit (it is not reading its
replies); one more closes it with 1008. So what a client has queued stays within
max_buffer + one reply + MAX_DEFERRED requests, whatever it sends."""
MAX_PIPELINED = 64
"""Requests held behind a ``bars`` answer still being written to a client that reads;
one more closes it with 1008 (the request rate limit keeps an honest client far below)."""


@dataclass(slots=True)
class MarketView:
    """What every session of one gateway reads: the symbols, their books and the limits.

    One object for all sessions; the gateway swaps ``listings`` and ``books``
    when the feed restarts.
    """

    listings: dict[str, SymbolInfo]
    books: Mapping[str, SymbolBook]
    cap: float
    """The cap on updates per second per symbol, a supported rate (0: no cap)."""
    max_symbols: int
    request_rate: float
    request_burst: float
    bars: BarStore
    """Every symbol's bars, which ``bars`` requests are answered from."""
    runs: EncodedRuns = field(default_factory=EncodedRuns)
    """Encoded runs of ``bars``' closed bars, shared by all sessions (new with ``bars``)."""


@dataclass(slots=True)
class Outcome:
    """What one request asks of the gateway, applied in this order: subscription
    changes, then frames, then the close."""

    subscribe: list[str] = field(default_factory=list)
    """Symbols to subscribe at ``rate`` (new ones, or held ones whose rate changes)."""
    rate: float = 0.0
    bars: list[int] | None = None
    """Bar intervals to stream live for ``subscribe``'s symbols (None: leave them as they are)."""
    unsubscribe: list[str] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    """Encoded messages to write: replies, errors, snapshots."""
    errors: list[str] = field(default_factory=list)
    """Codes of the error messages among ``frames``, for the counters."""
    close: tuple[int, str] | None = None
    """Close the connection with this code and reason."""
    answer: BarsAnswer | None = None
    """A ``bars`` answer to write after ``frames``, a slice per :meth:`Session.pull`
    (the gateway spreads it over loop turns, fairly between clients)."""

    def error(self, message: Error) -> None:
        self.frames.append(encode(message))
        self.errors.append(message.code)


def snapshot_frames(symbol: str, parts: list[bytes]) -> list[bytes]:
    """A symbol's snapshot as one or more frames, each within MAX_FRAME, oldest ticks first.

    A long history does not fit one 64 KiB frame, which clients are allowed to refuse
    (1009); consecutive snapshot messages of one symbol simply continue each other.
    """
    head = b'{"type":"snapshot","symbol":"' + symbol.encode() + b'","ticks":['
    frames: list[bytes] = []
    chunk: list[bytes] = []
    size = len(head) + 2
    for part in parts:
        if chunk and size + len(part) + 1 > MAX_FRAME:
            frames.append(head + b",".join(chunk) + b"]}")
            chunk, size = [], len(head) + 2
        chunk.append(part)
        size += len(part) + 1
    frames.append(head + b",".join(chunk) + b"]}")
    return frames


class Session:
    """One client's side of protocol v1, without I/O.

    Args:
        market: the symbols, books and limits, shared by all sessions.
        now: wall-clock seconds, to start the request-rate bucket.
        name: the client's address, for log lines.
    """

    __slots__ = ("answering", "bucket", "deferred", "market", "name")

    def __init__(self, market: MarketView, now: float, name: str = "?") -> None:
        self.market = market
        self.name = name
        self.bucket = TokenBucket(market.request_rate, market.request_burst, now)
        self.deferred: list[str | bytes] | None = None
        """Requests that came while the client was blocked or an answer was being written,
        answered once it drains and the answer is out."""
        self.answering: BarsAnswer | None = None
        """The ``bars`` answer being written, a slice at a time (see :meth:`pull`)."""

    def receive(
        self, message: str | bytes, now: float, held: Collection[str], blocked: bool
    ) -> Outcome:
        """Act on one request from the client.

        Args:
            message: the message as received (bytes for a binary one).
            now: wall-clock seconds.
            held: the symbols the client holds now, in subscription order.
            blocked: the client's write buffer is above its limit: it is not reading
                its replies, so the request waits (at most MAX_DEFERRED).
        """
        outcome = Outcome()
        bucket = self.bucket
        if not bucket.take(now):
            if bucket.refused_in_a_row >= ABUSE_LIMIT:
                log.warning("closing %s: request rate abuse", self.name)
                outcome.close = (CLOSE_POLICY, "request rate limit exceeded")
            elif bucket.refused_in_a_row == 1 or bucket.refused_in_a_row % 10 == 0:
                log.warning("rate limiting %s", self.name)
            outcome.error(Error(code="rate_limited", message="too many requests; slow down"))
            return outcome
        if blocked or self.deferred or self.answering is not None:
            deferred = self.deferred = self.deferred or []
            if len(deferred) >= (MAX_DEFERRED if blocked else MAX_PIPELINED):
                log.warning("closing %s: %d requests while not reading", self.name, len(deferred))
                outcome.close = (CLOSE_POLICY, "requests sent while not reading replies")
            else:
                deferred.append(message)
            return outcome
        self._answer(message, now, held, outcome)
        return outcome

    def resume(self, now: float, held: Collection[str]) -> Outcome | None:
        """Answer the oldest request held while the client was blocked (None: none left, or
        an answer is still being written).

        The gateway calls it until it returns None or the client blocks again.
        """
        if self.answering is not None:
            return None
        if not self.deferred:
            self.deferred = None
            return None
        outcome = Outcome()
        self._answer(self.deferred.pop(0), now, held, outcome)
        if not self.deferred:
            self.deferred = None
        return outcome

    def pull(self) -> list[bytes]:
        """The next slice of the ``bars`` answer being written: the frames completed by
        encoding its next bars (often none). When the last frame is out,
        :attr:`answering` is None and held requests may be resumed."""
        answer = self.answering
        if answer is None:
            return []
        frames = answer.step()
        if answer.done:
            self.answering = None
        return frames

    # -- requests --------------------------------------------------------------------

    def _answer(
        self, message: str | bytes, now: float, held: Collection[str], outcome: Outcome
    ) -> None:
        if isinstance(message, bytes):
            outcome.error(
                Error(code="bad_request", message="binary frames are not supported; send JSON text")
            )
            return
        try:
            request = decode_request(message)
            # A new request type is one more branch here, answered with encoded frames.
            if isinstance(request, Subscribe):
                self._subscribe(request, held, outcome)
            elif isinstance(request, Unsubscribe):
                self._unsubscribe(request, held, outcome)
            elif isinstance(request, ListSymbols):
                reply = Symbols(symbols=self._symbol_infos(), id=request.id)
                outcome.frames.append(encode(reply))
            elif isinstance(request, Ping):
                outcome.frames.append(encode(Pong(ts=now, id=request.id)))
            elif isinstance(request, BarsRequest):
                outcome.answer = self.answering = start_answer(
                    self.market.bars, request, self.market.runs
                )
        except ProtocolError as exc:
            outcome.error(exc.to_message())
        except Exception:
            log.exception("internal error handling a request from %s", self.name)
            outcome.error(Error(code="internal_error", message="internal server error"))

    def _symbol_infos(self) -> list[SymbolInfo]:
        infos = []
        books = self.market.books
        for symbol, info in self.market.listings.items():
            book = books.get(symbol)
            latest = None if book is None else book.latest
            infos.append(
                info if latest is None else info.model_copy(update={"price": latest.price})
            )
        return infos

    def _split(self, symbols: list[str]) -> tuple[list[str], list[str]]:
        """Known symbols (normalized) and unknown ones (as sent), each once, in request order.

        Dicts, not lists, so a request of thousands of symbols costs linear time.
        """
        known: dict[str, None] = {}
        unknown: dict[str, None] = {}
        listings = self.market.listings
        for raw in symbols:
            symbol = raw.strip().upper()
            if symbol in listings:
                known[symbol] = None
            else:
                unknown[raw] = None
        return list(known), list(unknown)

    @staticmethod
    def _unknown(unknown: list[str], rid: str | int | None, outcome: Outcome) -> None:
        shown = ", ".join(repr(s[:20]) for s in unknown[:10]) + (
            " ..." if len(unknown) > 10 else ""
        )
        outcome.error(
            Error(
                code="unknown_symbol",
                message=f"symbols: unknown symbol(s) {shown}",
                id=rid,
                symbols=[s[:20] for s in unknown[:100]],
            )
        )

    def _subscribe(self, request: Subscribe, held: Collection[str], outcome: Outcome) -> None:
        known, unknown = self._split(request.symbols)
        added = [s for s in known if s not in held]
        limit = self.market.max_symbols
        if len(held) + len(added) > limit:
            raise ProtocolError(
                "too_many_symbols",
                f"symbols: a connection may hold at most {limit} symbols "
                f"({len(held)} held, {len(added)} more asked); nothing was changed",
                request.id,
            )
        if unknown:
            self._unknown(unknown, request.id, outcome)
        rate = grant_rate(request.max_rate, self.market.cap)
        since = request.since or {}
        snapshots: list[bytes] = []
        books = self.market.books
        for symbol in added:
            # Taken now, before the subscription starts at the book's seq: nothing is lost
            # or sent twice, since the gateway applies the outcome before the next tick.
            book = books[symbol]
            resume_from = since.get(symbol)
            gap = book.since(resume_from) if resume_from is not None else None
            if gap is not None:
                snapshots.extend(snapshot_frames(symbol, gap))
            elif request.snapshot > 0:
                snapshots.extend(snapshot_frames(symbol, book.snapshot(request.snapshot)))
        outcome.subscribe, outcome.rate, outcome.bars = known, rate, request.bars
        symbols = [*held, *added]
        outcome.frames.append(encode(Subscribed(symbols=symbols, id=request.id, max_rate=rate)))
        outcome.frames.extend(snapshots)

    def _unsubscribe(self, request: Unsubscribe, held: Collection[str], outcome: Outcome) -> None:
        known, unknown = self._split(request.symbols)
        if unknown:
            self._unknown(unknown, request.id, outcome)
        outcome.unsubscribe = known
        gone = set(known)
        symbols = [s for s in held if s not in gone]
        outcome.frames.append(encode(Unsubscribed(symbols=symbols, id=request.id)))
