"""Live ``bar`` messages for clients that subscribed with ``"bars": [...]`` (pure).

For each (symbol, interval) a client watches, it gets the forming bar as it
changes, at most once per window of its granted rate (``"partial":true``), and
every bar once more when it closes (``"partial":false``), so the final values
always arrive whatever the rate. A bar closes when the store has taken a tick at or
after its end, of any symbol (see :attr:`~.bars.BarStore.watermark`). No I/O:
:meth:`LiveBars.on_ticks` returns (client, frame) pairs for the gateway to write.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .bars import BarStore
from .bars_answer import encode_bar_update
from .protocol import Tick

__all__ = ["LiveBars"]

C = TypeVar("C", bound=Hashable)

_Key = tuple[str, int]


@dataclass(slots=True)
class _Watch:
    gap: float
    """Seconds between partial updates (0: every change)."""
    closed_t: int
    """Start of the newest bar already final for this client (or closed before it came)."""
    sent: tuple[int, int] = (-1, 0)
    """(t, n) of the last partial sent."""
    sent_at: float = -math.inf


class LiveBars(Generic[C]):
    """Who watches which bars, and the frames each batch of ticks makes due.

    Args:
        store: the bars, which :meth:`on_ticks` also feeds.
    """

    def __init__(self, store: BarStore) -> None:
        self.store = store
        self.watches: dict[_Key, dict[C, _Watch]] = {}
        self._by_client: dict[C, set[_Key]] = {}
        self._held: set[_Key] = set()
        """Keys with a change some client has not had yet because of its rate."""
        self._due = math.inf
        """The earliest end (µs) of a watched forming bar: once the store's watermark passes
        it, every watch is looked at."""

    def subscribe(
        self, client: C, symbols: Iterable[str], intervals: Sequence[int], rate: float
    ) -> None:
        """Watch ``intervals`` of ``symbols`` (known to the store) at a granted ``rate``; these
        replace the intervals the client watched of those symbols (none: stop watching)."""
        gap = 1.0 / rate if rate > 0 else 0.0
        keys = self._by_client.setdefault(client, set())
        symbols = list(symbols)
        chosen = {(s, i) for s in symbols for i in intervals}
        for key in [k for k in keys if k[0] in symbols and k not in chosen]:
            keys.discard(key)
            self._forget(client, key)
        for symbol in symbols:
            for interval in intervals:
                key = (symbol, interval)
                series = self.store.series[symbol][interval]
                closed = series.closed
                newest = int(closed["t"][-1]) if len(closed) else -1
                watchers = self.watches.setdefault(key, {})
                old = watchers.get(client)
                watchers[client] = _Watch(gap, old.closed_t if old else newest)
                keys.add(key)
                self._held.add(key)
        self._due = -math.inf

    def unsubscribe(self, client: C, symbols: Iterable[str]) -> None:
        """Stop every bar of ``symbols`` for the client."""
        drop = set(symbols)
        keys = self._by_client.get(client, set())
        for key in [k for k in keys if k[0] in drop]:
            keys.discard(key)
            self._forget(client, key)

    def remove(self, client: C) -> None:
        """Forget a client that went away."""
        for key in self._by_client.pop(client, ()):
            self._forget(client, key)

    def _forget(self, client: C, key: _Key) -> None:
        watchers = self.watches.get(key)
        if watchers is not None:
            watchers.pop(client, None)
            if not watchers:
                del self.watches[key]

    def on_ticks(self, ticks: Sequence[Tick], now: float) -> list[tuple[C, bytes]]:
        """Feed the store a batch and return the ``bar`` frames now due, per client."""
        changed = self.store.ingest(ticks)
        if not self.watches:
            return []
        return self.due(changed, now)

    def due(self, changed: Iterable[str], now: float) -> list[tuple[C, bytes]]:
        """The frames due at ``now`` given the symbols whose bars changed."""
        keys: Iterable[_Key]
        if self.store.watermark >= self._due:
            keys = list(self.watches)
            self._due = math.inf  # recomputed from every watched forming bar below
        else:
            touched = set(changed)
            keys = {k for k in self.watches if k[0] in touched} | self._held
        self._held = set()
        out: list[tuple[C, bytes]] = []
        for key in keys:
            watchers = self.watches.get(key)
            if watchers:
                self._evaluate(key, watchers, now, out)
        return out

    def _evaluate(
        self, key: _Key, watchers: dict[C, _Watch], now: float, out: list[tuple[C, bytes]]
    ) -> None:
        symbol, interval = key
        series = self.store.series[symbol][interval]
        forming = series.forming
        if forming is None:
            return
        closed = series.closed
        end = (forming[0] + interval) * 1_000_000
        complete = self.store.watermark >= end
        partial_frame: bytes | None = None
        for client, watch in watchers.items():
            if watch.closed_t < forming[0]:
                # Bars closed since this client's last final one (normally one, at most a few).
                start = int(closed["t"].searchsorted(watch.closed_t, "right"))
                for row in closed[start:].tolist():
                    out.append((client, encode_bar_update(symbol, interval, row, False)))
                    watch.closed_t = row[0]
                if complete:
                    out.append((client, encode_bar_update(symbol, interval, tuple(forming), False)))
                    watch.closed_t = forming[0]
                    continue
            elif complete:
                continue
            if watch.sent == (forming[0], forming[6]):
                continue
            if now - watch.sent_at < watch.gap:
                self._held.add(key)
                continue
            if partial_frame is None:
                partial_frame = encode_bar_update(symbol, interval, tuple(forming), True)
            out.append((client, partial_frame))
            watch.sent, watch.sent_at = (forming[0], forming[6]), now
        if not complete:
            self._due = min(self._due, end)
