"""Conflation and throttling: which update each subscriber gets, and when (pure, no I/O).

The design keeps the cost of the fan-out proportional to what is delivered, not
to what the feed generates:

* A :class:`SymbolBook` holds each symbol's recent history once: the encoded
  bytes of every tick (for snapshots and resume) and its prices (for the high
  and low of a conflated update).
* A subscriber's state per symbol is just the seq and volume it was last sent,
  its minimum interval and a flag. Nothing is queued per subscriber: a pending
  update is simply "the book's seq is newer than what I was sent", and when it
  goes out, ``merged`` is the seq difference, ``size`` the volume difference and
  ``high``/``low`` a slice of the price ring. Memory per subscriber is bounded
  by its symbols, whatever it does.
* A subscriber that may send a symbol right now is *armed* on that symbol; a
  new tick visits only the armed subscribers. After a send, a throttled
  subscriber rests on a :class:`TimerWheel` until its interval has passed,
  and a slow one (its socket above the high-water mark) is not visited at all.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .protocol import Tick, encode_tick

__all__ = [
    "FRAME_PREFIX",
    "FRAME_SUFFIX",
    "Fanout",
    "Subscriber",
    "SubscriberGroup",
    "SymbolBook",
    "SymbolState",
    "TimerWheel",
    "ticks_frame",
]

FRAME_PREFIX = b'{"type":"ticks","ticks":['
FRAME_SUFFIX = b"]}"
PRICE_RING = 65536
"""Prices kept per symbol for the high and low of conflated updates."""


UNMERGED_MAX = 16
"""An unthrottled subscriber at most this many ticks behind gets each of them; further behind
(a slow consumer catching up) it gets one conflated update, so what it sees is fresh."""


def ticks_frame(parts: Sequence[bytes]) -> bytes:
    """Join pre-encoded ticks into one ``ticks`` message."""
    return FRAME_PREFIX + b",".join(parts) + FRAME_SUFFIX


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
        self._prices = np.zeros(ring, dtype=np.float64)
        self._volumes = np.zeros(ring, dtype=np.int64)
        self._ring = ring
        self._from = 1
        """Oldest seq of the contiguous run now in the rings."""

    def append(self, tick: Tick) -> bool:
        """Take a new tick; False (and nothing changes) when its seq is not newer."""
        if tick.seq <= self.seq:
            return False
        data = encode_tick(
            tick.symbol, tick.seq, tick.ts, tick.price, tick.bid, tick.ask, tick.size, tick.volume
        )
        if tick.seq != self.seq + 1:
            # A hole (a gateway joining late, a feed that skipped): keep what is held contiguous.
            self._encoded.clear()
            self._from = tick.seq
        self._encoded.append(data)
        self._prices[tick.seq % self._ring] = tick.price
        self._volumes[tick.seq % self._ring] = tick.volume
        self.seq = tick.seq
        self.volume = tick.volume
        self.latest = tick
        self.latest_bytes = data
        return True

    @property
    def first_held(self) -> int:
        """Seq of the oldest tick still in the history (seq + 1 when it is empty)."""
        return self.seq - len(self._encoded) + 1

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
        seq = max(seq, self._from, self.seq - self._ring + 1)
        return int(self._volumes[seq % self._ring])

    def update_since(self, seq: int, volume: int) -> bytes:
        """The update for a subscriber that was last sent ``seq`` (with cumulative ``volume``).

        One tick behind gives the shared pre-encoded bytes; more gives a
        conflated tick with merged, high, low and the summed size.
        """
        latest = self.latest
        assert latest is not None and seq < self.seq
        merged = self.seq - seq
        if merged == 1:
            return self.latest_bytes
        span = min(merged, self._ring, self.seq - self._from + 1)
        end = self.seq % self._ring + 1
        start = end - span
        if start >= 0:
            window = self._prices[start:end]
            high, low = float(window.max()), float(window.min())
        else:
            head, tail = self._prices[start:], self._prices[:end]
            high = float(max(head.max(), tail.max()))
            low = float(min(head.min(), tail.min()))
        return encode_tick(
            latest.symbol,
            latest.seq,
            latest.ts,
            latest.price,
            latest.bid,
            latest.ask,
            self.volume - volume,
            self.volume,
            merged,
            high,
            low,
        )


@dataclass(eq=False, slots=True)
class SymbolState:
    """What one subscriber holds of one symbol."""

    interval: float
    """Minimum seconds between two updates (1 / max_rate)."""
    last_seq: int
    last_volume: int
    armed: bool = False
    """True while the subscriber sits in the symbol's armed set."""


@dataclass(eq=False, slots=True)
class Subscriber:
    """One client's subscriptions and what is waiting to go out to it."""

    name: str = ""
    symbols: dict[str, SymbolState] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)
    """Symbols whose update goes out in the next frame."""
    blocked: bool = False
    """Set by the I/O layer while the client's socket is above its high-water mark."""
    closed: bool = False
    group: SubscriberGroup | None = None
    """The group this subscriber currently rides with; its own states are idle meanwhile."""


@dataclass(eq=False, slots=True)
class SubscriberGroup(Subscriber):
    """Unthrottled subscribers of the same symbols, in step: one cursor, one frame for all.

    Clients that want every tick of the same symbols receive identical frames,
    so the fan-out visits the group once per tick and builds its frame once;
    the I/O layer writes that frame to each member. A member that falls behind
    (its socket fills up) or changes its subscription leaves with the group's
    position and carries on alone.
    """

    members: set[Subscriber] = field(default_factory=set)


class TimerWheel:
    """Items due at a time, popped in batches with a fixed resolution (pure)."""

    def __init__(self, resolution: float = 0.002) -> None:
        self.resolution = resolution
        self._slots: dict[int, list[tuple[Subscriber, str, SymbolState]]] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        return sum(len(v) for v in self._slots.values())

    def schedule(self, when: float, item: tuple[Subscriber, str, SymbolState]) -> None:
        """Due no earlier than ``when`` (rounded up to the resolution)."""
        slot = math.ceil(when / self.resolution)
        bucket = self._slots.get(slot)
        if bucket is None:
            self._slots[slot] = bucket = []
            heapq.heappush(self._heap, slot)
        bucket.append(item)

    def next_time(self) -> float | None:
        return self._heap[0] * self.resolution if self._heap else None

    def pop_due(self, now: float) -> list[tuple[Subscriber, str, SymbolState]]:
        due: list[tuple[Subscriber, str, SymbolState]] = []
        limit = now / self.resolution + 1e-6  # next_time() * resolution must count as due
        while self._heap and self._heap[0] <= limit:
            due.extend(self._slots.pop(heapq.heappop(self._heap)))
        return due


class Fanout:
    """Subscriptions, books and the throttle schedule of one gateway (pure).

    The I/O layer calls :meth:`ingest` with new ticks and :meth:`advance` on a
    timer; both return the subscribers that have something to send, and
    :meth:`take_frame` gives the bytes to write to one of them.

    Args:
        history: ticks kept per symbol for snapshots and resume.
        resolution: granularity of the throttle timer in seconds.
    """

    def __init__(self, history: int, resolution: float = 0.002) -> None:
        self.history = history
        self.books: dict[str, SymbolBook] = {}
        self.armed: dict[str, set[Subscriber]] = {}
        self.wheel = TimerWheel(resolution)
        self.groups: dict[frozenset[str], SubscriberGroup] = {}
        self.conflated = 0
        """Generated ticks that went out inside a merged update (sum of merged - 1)."""
        self.delivered = 0
        """Updates sent, one per tick in a frame."""

    def book(self, symbol: str) -> SymbolBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = SymbolBook(symbol, self.history)
            self.armed[symbol] = set()
        return book

    # -- subscriptions ----------------------------------------------------------

    def subscribe(
        self, sub: Subscriber, symbol: str, interval: float, since: int | None = None
    ) -> None:
        """Add ``symbol`` to ``sub`` or change its interval.

        A new subscription starts at the book's current seq (the caller sends
        the snapshot), or at ``since`` when resuming, so the gap goes out as
        one conflated update if the caller could not send it as a snapshot.
        """
        self.leave(sub)
        book = self.book(symbol)
        state = sub.symbols.get(symbol)
        if state is not None:
            state.interval = interval
            return
        start = book.seq if since is None else min(max(since, 0), book.seq)
        volume = book.volume_at(start)
        state = SymbolState(interval=interval, last_seq=start, last_volume=volume)
        sub.symbols[symbol] = state
        if start < book.seq:
            sub.ready.add(symbol)
        else:
            self._arm(sub, symbol, state)

    def unsubscribe(self, sub: Subscriber, symbol: str) -> None:
        self.leave(sub)
        state = sub.symbols.pop(symbol, None)
        if state is None:
            return
        sub.ready.discard(symbol)
        if state.armed:
            self.armed[symbol].discard(sub)

    def remove(self, sub: Subscriber) -> None:
        """Forget a subscriber (its timer entries are dropped lazily)."""
        self.leave(sub)
        for symbol in list(sub.symbols):
            self.unsubscribe(sub, symbol)
        sub.closed = True

    # -- groups ------------------------------------------------------------------------

    def _in_step(self, sub: Subscriber) -> bool:
        # Unthrottled, nothing pending, and holding the newest tick of every symbol.
        if sub.ready or not sub.symbols:
            return False
        books = self.books
        return all(
            st.armed and st.interval == 0 and st.last_seq == books[sym].seq
            for sym, st in sub.symbols.items()
        )

    def join(self, sub: Subscriber) -> bool:
        """Move an unthrottled subscriber that is in step into the group for its symbols."""
        if sub.group is not None or sub.blocked or sub.closed or isinstance(sub, SubscriberGroup):
            return False
        if not self._in_step(sub):
            return False
        key = frozenset(sub.symbols)
        group = self.groups.get(key)
        if group is None:
            group = SubscriberGroup(name=f"group of {len(key)} symbols")
            for symbol in key:
                self.subscribe(group, symbol, 0.0)
            self.groups[key] = group
        elif not self._in_step(group):
            return False
        for symbol, state in sub.symbols.items():
            state.armed = False
            self.armed[symbol].discard(sub)
        sub.group = group
        group.members.add(sub)
        return True

    def leave(self, sub: Subscriber) -> bool:
        """Take a subscriber out of its group at the group's position; True if updates are ready."""
        group = sub.group
        if group is None:
            return False
        sub.group = None
        group.members.discard(sub)
        for symbol, state in sub.symbols.items():
            shared = group.symbols[symbol]
            state.last_seq, state.last_volume = shared.last_seq, shared.last_volume
            if shared.last_seq < self.books[symbol].seq:
                sub.ready.add(symbol)
            else:
                self._arm(sub, symbol, state)
        if not group.members:
            del self.groups[frozenset(group.symbols)]
            for symbol in list(group.symbols):
                self.unsubscribe(group, symbol)
            group.closed = True
        return bool(sub.ready)

    def _arm(self, sub: Subscriber, symbol: str, state: SymbolState) -> None:
        state.armed = True
        self.armed[symbol].add(sub)

    # -- the hot path -------------------------------------------------------------

    def ingest(self, ticks: Iterable[Tick]) -> set[Subscriber]:
        """Take new ticks; return the subscribers that now have an update ready."""
        dirty: set[Subscriber] = set()
        for tick in ticks:
            book = self.books.get(tick.symbol) or self.book(tick.symbol)
            if not book.append(tick):
                continue
            armed = self.armed[tick.symbol]
            if not armed:
                continue
            symbol = tick.symbol
            for sub in armed:
                sub.symbols[symbol].armed = False
                sub.ready.add(symbol)
            dirty.update(armed)
            armed.clear()
        return dirty

    def advance(self, now: float) -> set[Subscriber]:
        """Release throttled subscribers whose interval has passed; return those now ready."""
        dirty: set[Subscriber] = set()
        for sub, symbol, state in self.wheel.pop_due(now):
            if sub.symbols.get(symbol) is not state:
                continue  # unsubscribed or closed since
            if self.books[symbol].seq > state.last_seq:
                sub.ready.add(symbol)
                dirty.add(sub)
            else:
                self._arm(sub, symbol, state)
        return dirty

    def take_frame(self, sub: Subscriber, now: float) -> bytes | None:
        """The ``ticks`` frame of everything ready for ``sub``; marks it sent and reschedules."""
        if not sub.ready:
            return None
        weight = len(sub.members) if isinstance(sub, SubscriberGroup) else 1
        parts: list[bytes] = []
        for symbol in sub.ready:
            state = sub.symbols.get(symbol)
            if state is None:
                continue
            book = self.books[symbol]
            if book.seq > state.last_seq:
                merged = book.seq - state.last_seq
                if merged == 1:
                    parts.append(book.latest_bytes)
                elif (
                    state.interval == 0
                    and merged <= UNMERGED_MAX
                    and (ticks := book.recent(merged))
                ):
                    parts.extend(ticks)  # unthrottled and only a little behind: every tick
                else:
                    parts.append(book.update_since(state.last_seq, state.last_volume))
                    self.conflated += (merged - 1) * weight
                state.last_seq = book.seq
                state.last_volume = book.volume
            if state.interval > 0:
                self.wheel.schedule(now + state.interval, (sub, symbol, state))
            else:
                self._arm(sub, symbol, state)
        sub.ready.clear()
        if not parts:
            return None
        self.delivered += len(parts) * weight
        return ticks_frame(parts)
