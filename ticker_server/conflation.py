"""Conflation and throttling: which update each subscriber gets, and when (pure, no I/O).

The cost of the fan-out is proportional to what is delivered, not to what the
feed generates:

* A :class:`~.book.SymbolBook` holds each symbol's recent history once: the
  encoded bytes of every tick (for snapshots and resume) and rings of its fields
  (for the open, high, low and size of a conflated update).
* A subscriber's state per symbol is the seq and volume it was last sent, its
  window and where it waits. Nothing is queued per subscriber: a pending update
  is simply "the book's seq is newer than what I was sent", so memory per
  subscriber is bounded by its symbols, whatever it does.

Throttling uses clock-aligned windows. A subscriber granted rate r has the
window w = 1/r, and the windows are [k*w, (k+1)*w) of Unix time, the same for
every subscriber and every gateway. Per subscriber and symbol:

* every conflated update covers ticks whose ``ts`` lie in one window, so a
  candle whose width is a multiple of w is exact;
* at most one update goes out per window of send time (the server's clock), so
  at most r per second, while ticks reach the server within a window of their
  ``ts`` (a tick that arrives after its window's update went out gets its own
  update at the next boundary);
* a tick that arrives when nothing of that symbol is pending and nothing was sent
  in the current window goes out in the next flush, with no added delay;
* what the subscriber holds is never more than two windows plus one flush behind
  the feed. One whose socket was full gets what it missed merged into one update
  (which may span windows) once it drains; a flush that is merely late (a busy
  server) sends one exact update per window it missed.

A subscriber that may send a symbol at once is *armed* on it and a new tick
visits only the armed subscribers; after a send it *waits* on the
:class:`~.timer_wheel.TimerWheel` for the next window boundary, where all
subscribers of that window wake together. Subscribers of the same symbols and
window that are in step ride one :class:`~.subscriber.SubscriberGroup`: one
cursor and one encoded frame for all.

The books are in :mod:`.book`, the subscribers' states in :mod:`.subscriber`,
the wheel in :mod:`.timer_wheel`; this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable

from .book import FRAME_PREFIX, FRAME_SUFFIX, SymbolBook, ticks_frames
from .protocol import Tick, ts_micros, window_micros
from .subscriber import Phase, Subscriber, SubscriberGroup, SymbolState
from .timer_wheel import TimerWheel

__all__ = [
    "CATCHUP_WINDOWS",
    "FRAME_PREFIX",
    "FRAME_SUFFIX",
    "UNMERGED_MAX",
    "Fanout",
    "Phase",
    "Subscriber",
    "SubscriberGroup",
    "SymbolBook",
    "SymbolState",
    "TimerWheel",
    "ticks_frames",
]

UNMERGED_MAX = 16
"""An unthrottled subscriber at most this many ticks behind gets each of them; further behind
(a slow consumer catching up) it gets one conflated update, so what it sees is fresh."""

CATCHUP_WINDOWS = 2
"""A subscriber catching up after its socket was full gets one exact update per window when its
oldest pending tick is at most this many windows old, else one merged update per symbol."""


class Fanout:
    """Subscriptions, books and the throttle schedule of one gateway (pure).

    The I/O layer calls :meth:`ingest` with new ticks and :meth:`advance` on a
    timer (at :meth:`TimerWheel.next_time`); both return the subscribers that
    have something to send, and :meth:`take_frames` gives the bytes to write to
    one of them. Times are wall-clock seconds, the time base of tick ``ts``.

    Args:
        history: ticks kept per symbol for snapshots and resume.
    """

    def __init__(self, history: int) -> None:
        self.history = history
        self.books: dict[str, SymbolBook] = {}
        self.armed: dict[str, set[Subscriber]] = {}
        self.wheel = TimerWheel()
        self.groups: dict[tuple[frozenset[str], int], SubscriberGroup] = {}
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
        self, sub: Subscriber, symbol: str, rate: float, since: int | None = None
    ) -> None:
        """Add ``symbol`` to ``sub`` at a granted ``rate`` (0: unthrottled), or change its rate.

        A new subscription starts at the book's current seq (the caller sends
        the snapshot), or at ``since`` when resuming, so the gap goes out as
        conflated updates if the caller could not send it as a snapshot.
        """
        self.leave(sub)
        book = self.book(symbol)
        window = window_micros(rate)
        state = sub.symbols.get(symbol)
        if state is not None:
            if state.window != window:
                state.window = window
                if state.phase == Phase.WAITING:
                    self._release(sub, symbol, state, book)
            return
        start = book.seq if since is None else min(max(since, 0), book.seq)
        state = SymbolState(window=window, last_seq=start, last_volume=book.volume_at(start))
        sub.symbols[symbol] = state
        if start < book.seq:
            state.phase = Phase.READY
            sub.ready.add(symbol)
        else:
            self._arm(sub, symbol, state)

    def unsubscribe(self, sub: Subscriber, symbol: str) -> None:
        self.leave(sub)
        state = sub.symbols.pop(symbol, None)
        if state is None:
            return
        if state.phase == Phase.WAITING:
            self.wheel.cancel(state.due, sub, symbol)  # nothing of it stays behind
        sub.ready.discard(symbol)
        self.armed[symbol].discard(sub)

    def remove(self, sub: Subscriber) -> None:
        """Forget a subscriber and drop its timer entries at once."""
        self.leave(sub)
        for symbol in list(sub.symbols):
            self.unsubscribe(sub, symbol)
        sub.closed = True

    # -- groups ------------------------------------------------------------------------

    def _group_key(self, sub: Subscriber) -> tuple[frozenset[str], int] | None:
        if sub.ready or not sub.symbols:
            return None
        windows = {state.window for state in sub.symbols.values()}
        if len(windows) != 1 or any(st.phase == Phase.READY for st in sub.symbols.values()):
            return None
        return frozenset(sub.symbols), windows.pop()

    def join(self, sub: Subscriber) -> bool:
        """Move a subscriber into the group of its symbols and window if it is in step with it.

        With no such group, one is formed in the subscriber's own state.
        """
        if sub.group is not None or sub.blocked or sub.closed or isinstance(sub, SubscriberGroup):
            return False
        key = self._group_key(sub)
        if key is None:
            return False
        group = self.groups.get(key)
        if group is None:
            group = SubscriberGroup(name=f"group of {len(key[0])} symbols")
            for symbol, state in sub.symbols.items():
                shared = SymbolState(state.window, state.last_seq, state.last_volume)
                shared.sent = state.sent
                group.symbols[symbol] = shared
                if state.phase == Phase.WAITING:
                    self._wait(group, symbol, shared, state.due)
                else:
                    self._arm(group, symbol, shared)
            self.groups[key] = group
        elif group.ready or not all(
            state.in_step_with(group.symbols[symbol]) for symbol, state in sub.symbols.items()
        ):
            return False
        for symbol, state in sub.symbols.items():
            state.phase = Phase.RIDING
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
            state.sent = shared.sent
            if shared.phase == Phase.WAITING:
                self._wait(sub, symbol, state, shared.due)
            elif shared.phase == Phase.READY or shared.last_seq < self.books[symbol].seq:
                state.phase = Phase.READY
                sub.ready.add(symbol)
            else:
                self._arm(sub, symbol, state)
        if not group.members:
            key = (frozenset(group.symbols), next(iter(group.symbols.values())).window)
            del self.groups[key]
            for symbol in list(group.symbols):
                self.unsubscribe(group, symbol)
            group.closed = True
        return bool(sub.ready)

    # -- phases ------------------------------------------------------------------------

    def _arm(self, sub: Subscriber, symbol: str, state: SymbolState) -> None:
        state.phase = Phase.ARMED
        self.armed[symbol].add(sub)

    def _wait(self, sub: Subscriber, symbol: str, state: SymbolState, due: int) -> None:
        state.phase = Phase.WAITING
        state.due = due
        self.wheel.schedule(due, (sub, symbol, state))

    def _release(self, sub: Subscriber, symbol: str, state: SymbolState, book: SymbolBook) -> None:
        """End a wait: ready if the book moved on, else armed."""
        if book.seq > state.last_seq:
            state.phase = Phase.READY
            sub.ready.add(symbol)
        else:
            self._arm(sub, symbol, state)

    # -- the hot path -------------------------------------------------------------

    def ingest(self, ticks: Iterable[Tick]) -> set[Subscriber]:
        """Take new ticks; return the subscribers that now have an update ready."""
        dirty: set[Subscriber] = set()
        books = self.books
        for tick in ticks:
            symbol = tick.symbol
            book = books.get(symbol) or self.book(symbol)
            if not book.append(tick):
                continue
            armed = self.armed[symbol]
            if not armed:
                continue
            for sub in armed:
                sub.symbols[symbol].phase = Phase.READY
                sub.ready.add(symbol)
            dirty.update(armed)
            armed.clear()
        return dirty

    def advance(self, now: float) -> set[Subscriber]:
        """Wake the subscribers whose window boundary has come; return those now ready."""
        dirty: set[Subscriber] = set()
        now_us = ts_micros(now)
        for sub, symbol, state in self.wheel.pop_due(now_us):
            if (
                state.phase != Phase.WAITING
                or state.due > now_us
                or sub.symbols.get(symbol) is not state
            ):
                continue  # stale: unsubscribed, closed, regrouped or rescheduled since
            book = self.books[symbol]
            self._release(sub, symbol, state, book)
            if state.phase == Phase.READY:
                dirty.add(sub)
        return dirty

    def take_frames(self, sub: Subscriber, now: float) -> list[bytes]:
        """The ``ticks`` frames of everything ready for ``sub``; marks it sent and reschedules."""
        catch_up, sub.catch_up = sub.catch_up, False
        if not sub.ready:
            return []
        weight = len(sub.members) if isinstance(sub, SubscriberGroup) else 1
        now_us = ts_micros(now)
        parts: list[bytes] = []
        conflated = 0
        for symbol in sub.ready:
            state = sub.symbols.get(symbol)
            if state is None:
                continue
            book = self.books[symbol]
            window = state.window
            if window == 0:
                conflated += self._unthrottled(book, state, parts, catch_up)
                self._arm(sub, symbol, state)
                continue
            start = now_us - now_us % window  # this send window's first microsecond
            if state.sent >= start:
                self._wait(sub, symbol, state, start + window)  # already sent in this window
            elif book.seq > state.last_seq:
                conflated += self._windows(book, state, start, parts, catch_up)
                state.sent = now_us
                self._wait(sub, symbol, state, start + window)
            else:
                self._arm(sub, symbol, state)
        sub.ready.clear()
        if not parts:
            return []
        self.conflated += conflated * weight
        self.delivered += len(parts) * weight
        return ticks_frames(parts)

    @staticmethod
    def _unthrottled(
        book: SymbolBook, state: SymbolState, parts: list[bytes], catch_up: bool
    ) -> int:
        """Append what an unthrottled subscriber is due; return the ticks merged away.

        Every tick the book still holds, unless it is catching up from a full
        socket and more than UNMERGED_MAX behind: then one merged update.
        """
        merged = book.seq - state.last_seq
        if merged <= 0:
            return 0
        if merged == 1:
            parts.append(book.latest_bytes)
            merged = 0
        elif (merged <= UNMERGED_MAX or not catch_up) and (ticks := book.recent(merged)):
            parts.extend(ticks)
            merged = 0
        else:
            parts.append(book.update(state.last_seq, book.seq, state.last_volume))
            merged -= 1
        state.last_seq = book.seq
        state.last_volume = book.volume
        return merged

    @staticmethod
    def _windows(
        book: SymbolBook, state: SymbolState, start: int, parts: list[bytes], catch_up: bool
    ) -> int:
        """Append one update per window of the pending ticks that is due; return ticks merged away.

        Due are the windows that ended before ``start`` (this send window), or,
        when none did, the window of the oldest pending tick. A subscriber
        catching up from a full socket, more than CATCHUP_WINDOWS behind, gets
        them merged into one.
        """
        window = state.window
        after, volume = state.last_seq, state.last_volume
        oldest = book.key(after + 1)
        merged = 0
        if oldest >= start:
            upto = book.last_before(after, oldest - oldest % window + window)
            parts.append(book.update(after, upto, volume))
            merged += upto - after - 1
        else:
            last = book.last_before(after, start)
            if catch_up and oldest < start - CATCHUP_WINDOWS * window:
                # Fell behind (a full socket): what it missed, merged, so it is fresh again.
                parts.append(book.update(after, last, volume))
                merged += last - after - 1
                upto = last
            else:
                upto = after
                while upto < last:
                    first = book.key(upto + 1)
                    end = book.last_before(upto, first - first % window + window)
                    parts.append(book.update(upto, end, book.volume_at(upto)))
                    merged += end - upto - 1
                    upto = end
        state.last_seq = upto
        state.last_volume = book.volume_at(upto)
        return merged
