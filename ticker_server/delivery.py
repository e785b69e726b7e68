"""The fan-out's output side: paced flushes, the throttle timer, and writes that never wait.

Every write is synchronous: a frame goes into the client's transport without
awaiting, and a blocked client (write buffer above its high-water mark) is
skipped while its updates keep conflating in :mod:`.conflation`. A group's frame
is framed once (:func:`~.connection.text_frame`) and the same bytes go to every
member, the hottest loop of the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from .conflation import Fanout, Subscriber, SubscriberGroup
from .connection import Connection, text_frame
from .protocol import Tick
from .session import Session
from .stats import GatewayStats

__all__ = ["PACE_MIN", "PACE_RATIO", "Client", "Delivery"]

log = logging.getLogger("ticker_server.gateway")

PACE_RATIO = 0.25
"""Pause after a flush, as a share of the flush's CPU time: flushing may take 80 % of the
loop. At half (a ratio of 1) a server that needs more than half a core to deliver the
feed falls into ever longer pauses and bigger frames (scenario 1b: 16 flushes a second)."""
PACE_MIN = 0.001
"""Shortest pause between flushes; the event loop's selector cannot sleep less than 1 ms."""


@dataclass(eq=False, slots=True)
class Client(Subscriber):
    """A connected client: its subscriptions (the fan-out's), its session, and its clocks
    (loop time, see :mod:`.upkeep`)."""

    connection: Connection | None = None
    session: Session | None = None
    connected_at: float = 0.0
    paused: bool = False
    """Its transport's write buffer is above the high-water mark (set by the connection)."""
    closing: bool = False
    blocked_since: float = 0.0
    last_write: float = 0.0
    ping_sent: float = 0.0
    last_ping: float = 0.0
    delivered: int = 0

    @property
    def pong_at(self) -> float:
        return 0.0 if self.connection is None else self.connection.pong_at

    @property
    def deferred(self) -> list[str | bytes] | None:
        return None if self.session is None else self.session.deferred


class Delivery:
    """Writes what the fan-out has ready, soon after each batch of ticks or window boundary.

    Args:
        fanout: the subscriptions and books (replaced by :meth:`reset` on a feed restart).
        stats: the counters to update.
        clock: wall-clock seconds, the time base of tick ``ts`` and of the fan-out.
    """

    def __init__(self, fanout: Fanout, stats: GatewayStats, clock: Callable[[], float]) -> None:
        self.fanout = fanout
        self.stats = stats
        self.clock = clock
        self.pending: set[Subscriber] = set()
        """Subscribers with something to send at the next flush."""
        self._oldest_ts: float | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._next_flush_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0

    def reset(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.pending.clear()
        self._oldest_ts = None

    def stop(self) -> None:
        for handle in (self._flush_handle, self._timer):
            if handle is not None:
                handle.cancel()

    def ingest(self, ticks: Sequence[Tick]) -> None:
        """Take a batch of ticks, and flush soon to whoever has something ready."""
        dirty = self.fanout.ingest(ticks)
        if dirty:
            if self._oldest_ts is None:
                self._oldest_ts = ticks[0].ts
            self.pending.update(dirty)
            self.schedule()

    def mark(self, sub: Subscriber) -> None:
        """``sub`` has something ready (it drained, or left a group with updates pending)."""
        self.pending.add(sub)
        self.schedule()

    def schedule(self) -> None:
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            delay = self._next_flush_at - loop.time()
            # The selector sleeps in whole milliseconds, so a shorter pause would cost a full
            # one: pace only after flushes that took that long (under load), else flush now.
            if delay >= PACE_MIN:
                self._flush_handle = loop.call_later(delay, self._flush)
            else:
                self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        started = time.process_time()
        now = self.clock()
        loop = asyncio.get_running_loop()
        at = loop.time()
        if self._oldest_ts is not None:
            # Once per flush, not per client: how long the oldest tick in it waited for its write.
            self.stats.observe_latency(max(now - self._oldest_ts, 0.0))
            self._oldest_ts = None
        pending, self.pending = self.pending, set()
        take_frames = self.fanout.take_frames
        for sub in pending:
            if sub.blocked or sub.closed:
                continue
            for frame in take_frames(sub, now):
                count = frame.count(b'"seq"')
                if isinstance(sub, SubscriberGroup):
                    self._broadcast(sub, frame, count, at)
                else:
                    client = cast(Client, sub)
                    client.delivered += count
                    self.write(client, frame, at)
        self._arm_timer(now)
        # Pace flushes: at low load every tick leaves at once; under load the loop pauses
        # PACE_RATIO of the last flush's time before the next, so frames grow instead of
        # multiplying, and reads, pings and the feed keep their share of the CPU.
        # CPU time, not wall time: a flush preempted by another process must not count twice.
        self._next_flush_at = loop.time() + (time.process_time() - started) * PACE_RATIO

    def _arm_timer(self, now: float) -> None:
        due = self.fanout.wheel.next_time()
        if due is None or (self._timer is not None and self._timer_due <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = asyncio.get_running_loop().call_later(max(due - now, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        dirty = self.fanout.advance(self.clock())
        if dirty:
            self.pending.update(dirty)
        if self.pending:
            self._flush()
        else:
            self._arm_timer(self.clock())

    def write(self, client: Client, data: bytes, at: float | None = None) -> None:
        """Queue one text message on the client's transport without waiting.

        Args:
            client: whom to write to; nothing happens if it is closing or gone.
            data: the message, UTF-8 JSON.
            at: loop time now, if the caller has it (else it is read).
        """
        conn = client.connection
        if conn is None or client.closing or not conn.is_open:
            return
        try:
            conn.send_text(data)
        except Exception as exc:  # a transport torn down under us; on_lost cleans up
            log.debug("write to %s failed: %r", client.name, exc)
            return
        client.last_write = asyncio.get_running_loop().time() if at is None else at
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(data)

    def _broadcast(self, group: SubscriberGroup, frame: bytes, count: int, at: float) -> None:
        """Write one frame to every member of a group: the fan-out's hottest loop.

        The frame is framed once and the bookkeeping of :meth:`write` is done once
        for all; members with an extension (compression) take the per-connection path.
        """
        wire = text_frame(frame)
        sent = 0
        # A copy: a write that fills a member's buffer makes it leave the group.
        for member in list(group.members):
            client = cast(Client, member)
            client.delivered += count
            conn = client.connection
            if conn is None or client.closing or not conn.is_open:
                continue
            if not conn.raw:
                self.write(client, frame, at)
                continue
            try:
                conn.transport.write(wire)  # type: ignore[union-attr]  # set while open
            except Exception as exc:  # a transport torn down under us; on_lost cleans up
                log.debug("write to %s failed: %r", client.name, exc)
                continue
            client.last_write = at
            sent += 1
        self.stats.frames_sent += sent
        self.stats.bytes_sent += sent * len(frame)
