"""What a gateway accepts from the bus: nothing from Redis is trusted blindly (pure: no I/O).

Anything with write access to Redis (a bug, an operator's typo, an attacker) can
put garbage in a stream, and one bad entry must not stop a gateway, freeze a
symbol or keep a new gateway from starting. Each entry is validated on its own;
a bad one is counted by reason, logged at most once per :data:`LOG_PERIOD`, and
skipped, so the reader goes on with the next.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from statistics import median_low

from pydantic import TypeAdapter, ValidationError

from .protocol import Tick

__all__ = ["LOG_PERIOD", "MAX_SEQ", "REASONS", "BusGuard"]

REASONS = ("malformed", "unknown_symbol", "seq_jump", "stale_epoch", "listings")
"""Why an entry was rejected, as ``ticker_bus_rejected_total{reason}`` reports it."""
LOG_PERIOD = 10.0
"""Seconds between two log lines about rejected entries; the ones in between are counted."""
MAX_SEQ = 2**53
"""Largest seq accepted: what every client (JavaScript, int64 numpy) holds exactly."""

_TICKS: TypeAdapter[list[Tick]] = TypeAdapter(list[Tick])
_TICK: TypeAdapter[Tick] = TypeAdapter(Tick)


def _finite(tick: Tick) -> bool:
    return (
        math.isfinite(tick.ts)
        and math.isfinite(tick.price)
        and math.isfinite(tick.bid)
        and math.isfinite(tick.ask)
        and tick.seq <= MAX_SEQ
    )


def _why(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}"[:120] if where else str(error["msg"])[:120]


class BusGuard:
    """Validates entries and keeps each symbol's last accepted seq.

    A tick is accepted when its symbol was announced, its numbers are finite and
    its seq is newer than the last accepted (0 before any) by at most ``keep``
    (the history size: a gap any longer means the entry is forged, or the reader
    lost track, which :meth:`anchor` settles from a run of history). Older seqs
    are repeats and dropped silently. Two consecutive ticks that jump together
    are believed: one bad entry cannot freeze a symbol, and neither can a real jump.

    Args:
        keep: the history size, the largest plausible seq jump.
        log: where rejections are reported.
        clock: monotonic seconds, for the log's rate limit.
    """

    def __init__(
        self, keep: int, log: logging.Logger, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.keep = keep
        self.log = log
        self.clock = clock
        self.symbols: frozenset[str] = frozenset()
        self.seen: dict[str, int] = {}
        """The last accepted seq of each symbol."""
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._jumps: dict[str, int] = {}
        """A symbol's last rejected jump, which its next tick may confirm."""
        self._log_at = -math.inf
        self._quiet = 0

    def reset(self, symbols: Iterable[str]) -> None:
        """A new epoch: these symbols, and seqs start again."""
        self.symbols = frozenset(symbols)
        self.seen.clear()
        self._jumps.clear()

    def reject(self, reason: str, detail: str) -> None:
        """Count one rejected entry and log it, unless a line went out in the last LOG_PERIOD."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        now = self.clock()
        if now < self._log_at:
            self._quiet += 1
            return
        more = f" ({self._quiet} more rejected since the last report)" if self._quiet else ""
        self.log.warning("rejected a bus entry: %s (%s)%s", reason, detail, more)
        self._log_at = now + LOG_PERIOD
        self._quiet = 0

    def batch(self, data: bytes) -> list[Tick]:
        """A feed entry's ticks; none if the entry is malformed."""
        try:
            return _TICKS.validate_json(data)
        except ValidationError as exc:
            self.reject("malformed", f"feed entry: {_why(exc)}")
            return []

    def history(self, symbol: str, entries: Sequence[dict[bytes, bytes]]) -> list[Tick]:
        """A symbol stream's entries (newest first, as XREVRANGE gives them) as ticks, oldest
        first, each entry decoded on its own."""
        ticks: list[Tick] = []
        for fields in reversed(entries):
            try:
                tick = _TICK.validate_json(fields.get(b"t", b""))
            except ValidationError as exc:
                self.reject("malformed", f"{symbol} history: {_why(exc)}")
                continue
            if tick.symbol != symbol:
                self.reject("unknown_symbol", f"{tick.symbol[:20]!r} in the stream of {symbol}")
                continue
            ticks.append(tick)
        return ticks

    def anchor(self, symbol: str, ticks: Sequence[Tick]) -> None:
        """Take a run of one symbol's history (oldest first) as where the symbol stands, when
        nothing was accepted yet or the run is more than ``keep`` ahead (the stream was trimmed
        past what was seen). The median, so a few forged entries in the run cannot move it."""
        if not ticks:
            return
        base = median_low([tick.seq - i for i, tick in enumerate(ticks)]) - 1
        last = self.seen.get(symbol)
        if last is None or base - last > self.keep:
            self.seen[symbol] = max(base, 0)

    def admit(self, ticks: Iterable[Tick]) -> list[Tick]:
        """The ticks that are new and plausible, in order; the implausible ones are rejected."""
        seen, jumps, keep = self.seen, self._jumps, self.keep
        fresh: list[Tick] = []
        for tick in ticks:
            symbol, seq = tick.symbol, tick.seq
            if symbol not in self.symbols:
                self.reject("unknown_symbol", f"{symbol[:20]!r} was not announced")
                continue
            if not _finite(tick):
                self.reject("malformed", f"{symbol} seq {seq}: a number out of range")
                continue
            # Nothing accepted yet (an empty history): seqs start at 1.
            last = seen.get(symbol, 0)
            if seq <= last:
                continue  # a repeat (history and feed stream overlap)
            if seq - last > keep:
                jumped = jumps.get(symbol)
                if jumped is None or not 0 < seq - jumped <= keep:
                    jumps[symbol] = seq
                    self.reject("seq_jump", f"{symbol} seq {last} -> {seq}")
                    continue
            if jumps:
                jumps.pop(symbol, None)
            seen[symbol] = seq
            fresh.append(tick)
        return fresh
