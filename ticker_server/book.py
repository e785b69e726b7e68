"""A symbol's recent ticks, encoded once for all subscribers, and the frames carrying them (pure).

A :class:`SymbolBook` holds each symbol's recent history once: the encoded bytes
of every tick (for snapshots and resume) and rings of its fields (for the open,
high, low and size of a conflated update). See :mod:`.conflation` for who gets
which update and when.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from .protocol import MAX_FRAME, Tick, encode_tick, ts_micros

__all__ = ["FRAME_PREFIX", "FRAME_SUFFIX", "PRICE_RING", "SymbolBook", "ticks_frames"]

FRAME_PREFIX = b'{"type":"ticks","ticks":['
FRAME_SUFFIX = b"]}"
PRICE_RING = 16384
"""Ticks whose fields are kept per symbol for conflated updates (at least --history)."""


def ticks_frames(parts: Sequence[bytes]) -> list[bytes]:
    """Join pre-encoded ticks into ``ticks`` messages, each within :data:`MAX_FRAME`."""
    room = MAX_FRAME - len(FRAME_PREFIX) - len(FRAME_SUFFIX)
    frames: list[bytes] = []
    start, size = 0, -1
    for i, part in enumerate(parts):
        if size + len(part) + 1 > room and i > start:
            frames.append(FRAME_PREFIX + b",".join(parts[start:i]) + FRAME_SUFFIX)
            start, size = i, -1
        size += len(part) + 1
    if start < len(parts):
        frames.append(FRAME_PREFIX + b",".join(parts[start:]) + FRAME_SUFFIX)
    return frames


class SymbolBook:
    """One symbol's latest state and recent history, encoded once for all subscribers.

    Args:
        symbol: the symbol.
        history: how many recent ticks to keep for snapshots and resume.
    """

    def __init__(self, symbol: str, history: int) -> None:
        self.symbol = symbol
        self.seq = 0
        """Seq of the newest tick held (0 before the first)."""
        self.volume = 0
        self.latest: Tick | None = None
        self.latest_bytes = b""
        self._encoded: deque[bytes] = deque(maxlen=max(history, 1))
        self._history = history
        ring = max(PRICE_RING, history)
        self._ring = ring
        self._prices = np.zeros(ring, dtype=np.float64)
        self._bids = np.zeros(ring, dtype=np.float64)
        self._asks = np.zeros(ring, dtype=np.float64)
        self._ts = np.zeros(ring, dtype=np.float64)
        self._volumes = np.zeros(ring, dtype=np.int64)
        self._keys = np.zeros(ring, dtype=np.int64)
        """Each tick's ts in microseconds, never below its predecessor's: its window key."""
        self._from = 1
        """Oldest seq of the contiguous run now in the rings."""

    def append(self, tick: Tick) -> bool:
        """Take a new tick; False (and nothing changes) when its seq is not newer."""
        if tick.seq <= self.seq:
            return False
        data = encode_tick(
            tick.symbol, tick.seq, tick.ts, tick.price, tick.bid, tick.ask, tick.size, tick.volume
        )
        key = ts_micros(tick.ts)
        if tick.seq != self.seq + 1:
            # A hole (a gateway joining late, a feed that skipped): keep what is held contiguous.
            self._encoded.clear()
            self._from = tick.seq
        elif self.seq:
            # A feed clock that stepped back must not reopen a window that already went out.
            key = max(key, int(self._keys[self.seq % self._ring]))
        i = tick.seq % self._ring
        self._encoded.append(data)
        self._prices[i] = tick.price
        self._bids[i] = tick.bid
        self._asks[i] = tick.ask
        self._ts[i] = tick.ts
        self._volumes[i] = tick.volume
        self._keys[i] = key
        self.seq = tick.seq
        self.volume = tick.volume
        self.latest = tick
        self.latest_bytes = data
        return True

    @property
    def first_held(self) -> int:
        """Seq of the oldest tick still in the history (seq + 1 when it is empty)."""
        return self.seq - len(self._encoded) + 1

    @property
    def first_in_ring(self) -> int:
        """Seq of the oldest tick whose fields are still in the rings."""
        return max(self._from, self.seq - self._ring + 1, 1)

    def snapshot(self, count: int) -> list[bytes]:
        """The newest ``count`` ticks (at most the history), oldest first."""
        if count <= 0 or self._history <= 0:
            return []
        held = len(self._encoded)
        return list(self._encoded)[max(held - count, 0) :]

    def recent(self, count: int) -> list[bytes] | None:
        """The newest ``count`` ticks, oldest first, or None when fewer are held."""
        encoded = self._encoded
        if count > len(encoded):
            return None
        return [encoded[i] for i in range(-count, 0)]

    def since(self, seq: int) -> list[bytes] | None:
        """The ticks after ``seq``, or None when some of them are no longer held."""
        if seq >= self.seq:
            return []
        if seq + 1 < self.first_held:
            return None
        held = list(self._encoded)
        return held[seq + 1 - self.first_held :]

    def volume_at(self, seq: int) -> int:
        """Cumulative volume as it stood after tick ``seq`` (0 before the first tick)."""
        if seq <= 0:
            return 0
        if seq >= self.seq:
            return self.volume
        seq = max(seq, self.first_in_ring)
        return int(self._volumes[seq % self._ring])

    def key(self, seq: int) -> int:
        """The window key (ts in microseconds) of a tick in the rings."""
        return int(self._keys[max(seq, self.first_in_ring) % self._ring])

    def last_before(self, after: int, limit: int) -> int:
        """The newest seq after ``after`` whose key is below ``limit`` (``after`` if none)."""
        lo, hi = after + 1, self.seq  # keys never decrease, so bisect on seq
        keys, ring = self._keys, self._ring
        lo = max(lo, self.first_in_ring)
        while lo <= hi:
            mid = (lo + hi) // 2
            if keys[mid % ring] < limit:
                lo = mid + 1
            else:
                hi = mid - 1
        return max(hi, after)

    def update(self, after: int, upto: int, volume: int) -> bytes:
        """The update covering ticks ``after + 1`` to ``upto`` (``volume``: that after ``after``).

        One tick gives its pre-encoded bytes; more give a conflated tick with
        merged, open, high, low and the summed size, stamped as the last.
        """
        merged = upto - after
        if upto == self.seq and merged == 1:
            return self.latest_bytes
        ring = self._ring
        j = upto % ring
        if merged == 1 and upto >= self.first_held:
            return self._encoded[upto - self.first_held]
        i = max(after + 1, self.first_in_ring) % ring
        high = low = 0.0
        if merged > 1:  # a single tick outside the held history needs no range
            if i <= j:
                window = self._prices[i : j + 1]
                high, low = float(window.max()), float(window.min())
            else:
                head, tail = self._prices[i:], self._prices[: j + 1]
                high = float(max(head.max(), tail.max()))
                low = float(min(head.min(), tail.min()))
        total = int(self._volumes[j])
        return encode_tick(
            self.symbol,
            upto,
            float(self._ts[j]),
            float(self._prices[j]),
            float(self._bids[j]),
            float(self._asks[j]),
            total - volume,
            total,
            merged,
            high,
            low,
            float(self._prices[i]),
        )
