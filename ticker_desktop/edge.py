"""The client's edge: what a server sends is checked here before anything else sees it.

A dashboard must stay up and truthful whatever a server sends, so every frame is
decoded here and every tick judged on its own (one bad tick does not cost the
good ones beside it): values that are not finite or not plausible, a ``ts`` far
from the local clock, a seq that goes backwards or jumps implausibly, ticks of
symbols not asked for and snapshots larger than asked are rejected with a
reason. :class:`LogThrottle` keeps the log and the status bar to one line per
reason per interval however fast the rejections come.

Everything here is pure (clocks are passed in) and is tested without sockets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ticker_server.protocol import (
    SYMBOL_PATTERN,
    Hello,
    ServerMessage,
    Snapshot,
    SymbolInfo,
    Tick,
    Ticks,
    decode_server_message,
)

from .throttle import LogThrottle, Report

__all__ = [
    "MAX_SEQ",
    "QUIET",
    "Decoded",
    "EdgeLimits",
    "Gate",
    "LogThrottle",
    "Report",
    "SequenceGuard",
    "believable_info",
    "check_hello",
    "check_tick",
    "decode_frame",
    "shorten",
]

MAX_SEQ = 2**53
"""Largest seq, size or volume believed: beyond it numbers stop fitting int64 arrays and
doubles exactly, and no real feed gets there."""

QUIET = frozenset({"unknown_type", "unsubscribed"})
"""Reasons that are normal with an honest server (a newer message type; ticks in flight
after an unsubscribe): counted and logged at INFO, but not shown to the user."""


@dataclass(frozen=True)
class EdgeLimits:
    """What the client believes of a server; the defaults are generous for any real feed."""

    max_price: float = 1e9
    """Prices above this are absurd (no listed share costs a billion)."""
    max_future: float = 300.0
    """Seconds a tick's ts may lie ahead of the local clock (clock skew between machines)."""
    max_age: float = 7 * 86400.0
    """Seconds a tick's ts may lie behind the local clock (history after a long weekend)."""
    seq_slack: int = 100_000
    """A seq may run this far ahead of the last one held at once ..."""
    seq_rate: float = 10_000.0
    """... plus this many per second since that one arrived (a fast feed while we were away)."""


def _finite(tick: Tick) -> bool:
    values = (tick.ts, tick.price, tick.bid, tick.ask, tick.high, tick.low, tick.open)
    return all(v is None or math.isfinite(v) for v in values)


def check_tick(tick: Tick, now: float, limits: EdgeLimits) -> tuple[str, str] | None:
    """Judge one tick on its own against the wall clock ``now``.

    Returns:
        None if it is believable, else ``(reason, detail)``.
    """
    # The common case in one expression (NaN fails every comparison, inf the upper bounds);
    # only a tick that fails it, or a merged one, is looked at closely (a flood is 10^5/s).
    top = limits.max_price
    if (
        tick.merged is None
        and 0 < tick.bid <= tick.ask <= top
        and 0 < tick.price <= top
        and now - limits.max_age <= tick.ts <= now + limits.max_future
        and tick.seq <= MAX_SEQ
        and tick.size <= MAX_SEQ
        and tick.volume <= MAX_SEQ
    ):
        return None
    return _why(tick, now, limits)


def _why(tick: Tick, now: float, limits: EdgeLimits) -> tuple[str, str] | None:
    if not _finite(tick):
        return "not_finite", f"{tick.symbol} #{tick.seq}: a value is NaN or infinite"
    # Servers of this version send "open": 0.0 on merged ticks when they do not know it.
    opened = None if tick.open == 0.0 else tick.open
    given = (tick.price, tick.bid, tick.ask, tick.high, tick.low, opened)
    prices = [p for p in given if p is not None]
    if max(prices) > limits.max_price or min(prices) <= 0:
        return "absurd_value", f"{tick.symbol} #{tick.seq}: price {max(prices):g}"
    if max(tick.seq, tick.size, tick.volume, tick.merged or 0) > MAX_SEQ:
        return "absurd_value", f"{tick.symbol} #{tick.seq}: a count beyond 2**53"
    crossed = tick.high is not None and tick.low is not None and tick.low > tick.high
    if tick.bid > tick.ask or crossed:
        return "absurd_value", f"{tick.symbol} #{tick.seq}: crossed bid/ask or low/high"
    where = f"{tick.symbol} #{tick.seq}: ts"
    if tick.ts > now + limits.max_future:
        return "ts_future", f"{where} {tick.ts - now:.0f} s ahead of our clock"
    if tick.ts < now - limits.max_age:
        return "ts_past", f"{where} {now - tick.ts:.0f} s behind our clock"
    return None


def check_hello(hello: Hello) -> str | None:
    """Why a hello cannot be believed (its timings drive our watchdog and requests), or None."""
    if not (math.isfinite(hello.heartbeat) and 0 < hello.heartbeat <= 3600):
        return f"hello: heartbeat {hello.heartbeat!r} is not between 0 and 3600 s"
    if not (math.isfinite(hello.max_rate) and hello.max_rate >= 0):
        return f"hello: max_rate {hello.max_rate!r} is not a rate"
    return None


class SequenceGuard:
    """The last seq held per symbol: older ticks are repeats, implausible jumps are lies.

    A jump is plausible up to ``seq_slack`` plus ``seq_rate`` per second since the
    last tick held arrived (monotonic ``now``), so a resume after a long outage
    passes while a seq of 2**62 (which would make every later real tick look old)
    does not.
    """

    def __init__(self, limits: EdgeLimits | None = None) -> None:
        self.limits = limits or EdgeLimits()
        self._last: dict[str, tuple[int, float]] = {}

    def check(self, symbol: str, seq: int, now: float = 0.0) -> str | None:
        """Record the tick and return None if it is newer and plausible, else the reason."""
        held = self._last.get(symbol)
        if held is not None:
            last, at = held
            if seq <= last:
                return "seq_old"
            allowed = self.limits.seq_slack + self.limits.seq_rate * max(0.0, now - at)
            if seq - last > allowed:
                return "seq_jump"
        self._last[symbol] = (seq, now)
        return None

    def accept(self, symbol: str, seq: int, now: float = 0.0) -> bool:
        """Record the tick and return True if it is newer (and plausible)."""
        return self.check(symbol, seq, now) is None

    def last_seq(self, symbol: str) -> int | None:
        held = self._last.get(symbol)
        return None if held is None else held[0]

    def since(self, symbols: Iterable[str]) -> dict[str, int]:
        """The ``since`` map of a resuming subscribe."""
        return {s: self._last[s][0] for s in symbols if s in self._last}

    def forget(self, symbol: str) -> None:
        self._last.pop(symbol, None)

    def reset(self) -> None:
        """Forget everything (the server's feed restarted and its seqs with it)."""
        self._last.clear()


# ------------------------------------------------------------------------- decoding

_tick_adapter: TypeAdapter[Tick] = TypeAdapter(Tick)
_ticks_adapter: TypeAdapter[list[Tick]] = TypeAdapter(list[Tick])


def shorten(text: str, limit: int = 120) -> str:
    """A server's text made safe to show: one line, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def believable_info(info: SymbolInfo) -> bool:
    """Whether a list_symbols entry names a real symbol with a real price."""
    price_ok = math.isfinite(info.price) and info.price >= 0
    return bool(SYMBOL_PATTERN.match(info.symbol)) and price_ok and len(info.name) <= 200


@dataclass
class Decoded:
    """One frame after the edge: the message (None if nothing usable) and what was rejected."""

    message: ServerMessage | None = None
    rejected: list[tuple[str, str]] = field(default_factory=list)


def _ticks(items: list[Any], decoded: Decoded) -> list[Tick]:
    try:  # the whole list in one call; one by one only when something in it is bad
        return _ticks_adapter.validate_python(items)
    except ValidationError:
        pass
    good: list[Tick] = []
    for item in items:
        try:
            good.append(_tick_adapter.validate_python(item))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "tick"
            decoded.rejected.append(("bad_tick", shorten(f"{where}: {first['msg']}")))
    return good


def decode_frame(data: str | bytes) -> Decoded:
    """Decode one server frame; ticks are validated one by one so a bad one costs only itself.

    Never raises: a frame that is not JSON, nests too deep, or has bad fields comes
    back as a ``malformed`` rejection; an unknown type as ``unknown_type``.
    """
    decoded = Decoded()
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        decoded.rejected.append(("malformed", shorten(f"not JSON: {exc}")))
        return decoded
    kind = raw.get("type") if isinstance(raw, dict) else None
    items = raw.get("ticks") if kind in ("ticks", "snapshot") else None
    if kind in ("ticks", "snapshot") and not isinstance(items, list):
        decoded.rejected.append(("malformed", f"{kind}: ticks is not a list"))
    elif kind == "ticks" and isinstance(items, list):
        decoded.message = Ticks(ticks=_ticks(items, decoded))
    elif kind == "snapshot" and isinstance(items, list):
        symbol = raw.get("symbol")
        if not isinstance(symbol, str):
            decoded.rejected.append(("malformed", "snapshot: no symbol"))
            return decoded
        ticks = _ticks(items, decoded)
        mine = [t for t in ticks if t.symbol == symbol]
        if len(mine) < len(ticks):
            decoded.rejected.append(("wrong_symbol", shorten(f"snapshot of {symbol} with others")))
        decoded.message = Snapshot(symbol=symbol, ticks=mine)
    else:
        try:
            decoded.message = decode_server_message(data)
        except (ValueError, RecursionError) as exc:  # includes pydantic's ValidationError
            decoded.rejected.append(("malformed", shorten(str(exc))))
            return decoded
        if decoded.message is None:
            shown = kind if isinstance(kind, str) else type(raw).__name__
            decoded.rejected.append(("unknown_type", shorten(f"message type {shown!r}")))
    return decoded


# ---------------------------------------------------------------------------- gate


class Gate:
    """Admits what a server sends, tick by tick, and reports what it turns away.

    It holds the one :class:`SequenceGuard` of a client, what is left of each
    symbol's snapshot (no more ticks than were asked for), and the counts of
    rejections, whose reports (one per reason per ``interval``) go to ``on_report``.

    Args:
        limits: what is believable.
        interval: seconds between two reports of one reason.
        on_report: called with each report that is due.
        wall: wall clock for ``ts`` checks.
        monotonic: clock for seq plausibility and report spacing.
    """

    def __init__(
        self,
        limits: EdgeLimits,
        interval: float,
        on_report: Callable[[Report], None],
        wall: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self.limits = limits
        self.guard = SequenceGuard(limits)
        self.rejections = LogThrottle(interval, monotonic)
        self.repeats = 0
        """Ticks dropped because their seq was not newer than the one held."""
        self._on_report = on_report
        self._wall = wall
        self._monotonic = monotonic
        self._budget: dict[str, int] = {}

    def reject(self, reason: str, detail: str, n: int = 1) -> None:
        """Count ``n`` rejections of ``reason``, reporting if one is due."""
        report = self.rejections.add(reason, detail, n)
        if report is not None:
            self._on_report(report)

    def flush(self) -> None:
        """Report counts held back whose interval has passed."""
        for report in self.rejections.flush():
            self._on_report(report)

    def expect_snapshot(self, symbol: str, ticks: int) -> None:
        """A subscribe asked for (at most) ``ticks`` of history of ``symbol``."""
        self._budget[symbol] = ticks

    def forget(self, symbol: str) -> None:
        self.guard.forget(symbol)
        self._budget.pop(symbol, None)

    def new_connection(self) -> None:
        """Nothing asked on an old connection is owed on the new one."""
        self._budget.clear()

    def ticks(self, ticks: Iterable[Tick], wanted: Container[str]) -> list[Tick]:
        """The live ticks to believe, in order."""
        wall, now = self._wall(), self._monotonic()
        return [t for t in ticks if self._admit(t, wanted, wall, now)]

    def snapshot(self, snapshot: Snapshot, wanted: Container[str]) -> list[Tick]:
        """The ticks of a snapshot to believe: wanted, within what was asked, each believable."""
        symbol = snapshot.symbol
        if symbol not in wanted:
            self.reject("unsubscribed", f"a snapshot of {shorten(symbol, 20)}, not asked for")
            return []
        budget = self._budget.get(symbol, 0)
        taken = snapshot.ticks[:budget]
        self._budget[symbol] = budget - len(taken)
        excess = len(snapshot.ticks) - len(taken)
        if excess:
            self.reject(
                "snapshot_excess", f"{excess} ticks of {symbol} beyond what we asked", excess
            )
        return self.ticks(taken, wanted)

    def _admit(self, tick: Tick, wanted: Container[str], wall: float, now: float) -> bool:
        if tick.symbol not in wanted:
            self.reject("unsubscribed", f"a tick of {shorten(tick.symbol, 20)}, not asked for")
            return False
        wrong = check_tick(tick, wall, self.limits)
        if wrong is not None:
            self.reject(*wrong)
            return False
        held = self.guard.last_seq(tick.symbol)
        reason = self.guard.check(tick.symbol, tick.seq, now)
        if reason is None:
            return True
        if reason == "seq_old":
            self.repeats += 1
        self.reject(reason, f"{tick.symbol} #{tick.seq} after #{held}")
        return False
