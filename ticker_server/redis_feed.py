"""The feed side of the Redis bus: announce the listings and epoch, write every tick.

:meth:`RedisPublisher.publish` never awaits. It queues the batch (past
``max_pending`` ticks the oldest batches are dropped and counted) and one writer
task flushes the queue as one Lua call: an ``XADD`` per tick to its symbol's
stream, then one to the feed stream, returning the stored epoch so that an empty,
restarted Redis is announced to again. Each tick is encoded once. A new epoch
deletes the previous run's streams when it announces. (Keys: :mod:`.redis_link`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import cast

from pydantic import ValidationError
from redis.commands.core import AsyncScript

from .backoff import Backoff
from .protocol import SymbolInfo, Tick, encode_tick
from .redis_link import (
    EPOCH_KEY,
    FEED_STREAM,
    LISTINGS,
    LISTINGS_KEY,
    REDIS_DOWN,
    RedisLink,
    tick_stream,
)

__all__ = ["APPEND_SCRIPT", "FEED_MAXLEN", "FLUSH_TICKS", "MAX_PENDING", "RedisPublisher"]

log = logging.getLogger("ticker_server.redis_bus.feed")

FEED_MAXLEN = 10_000
"""Flushes kept in the feed stream (roughly: what a briefly disconnected gateway can re-read)."""
MAX_PENDING = 10_000
"""Ticks the feed holds while Redis is unreachable; older ones are dropped."""
FLUSH_TICKS = 1_000
"""Most ticks written by one pipeline (and carried by one feed entry)."""
HEARTBEAT = 1.0
"""Seconds without ticks after which the feed writes an empty entry."""
LISTINGS_REFRESH = 5.0
"""Seconds between rewrites of the listings with the latest prices."""

APPEND_SCRIPT = """
for i = 3, #KEYS do
  redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[i + 2])
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[3], 't', ARGV[4])
return redis.call('GET', KEYS[2])
"""
"""One flush as one command (a pipeline of an XADD per tick costs the client ~10x the CPU).

KEYS: the feed stream, the epoch key, then each tick's symbol stream. ARGV: the
history length, the feed stream length, the epoch, the batch, then each tick.
Returns the stored epoch.
"""


class RedisPublisher:
    """Writes one feed run's listings and ticks to Redis, holding them while Redis is away.

    Args:
        link: the client and task owner shared with the gateway side.
        history: ticks kept per symbol stream.
        max_pending: ticks queued while Redis is slow or unreachable.
        backoff_cap: longest wait between reconnect attempts, in seconds.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        history: int = 1000,
        max_pending: int = MAX_PENDING,
        backoff_cap: float = 5.0,
    ) -> None:
        self.link = link
        self.keep = history
        self.max_pending = max_pending
        self.backoff_cap = backoff_cap
        self.epoch = ""
        """The epoch this feed run announces (empty before :meth:`announce`)."""
        self.pending = 0
        """Ticks queued (at most ``max_pending``, plus one flush under way)."""
        self.dropped = 0
        """Ticks dropped because Redis could not take them in time."""
        self.written = 0
        """Ticks written to Redis."""
        self.reconnects = 0
        """Times the writer got Redis back after losing it."""
        self._queue: deque[Sequence[Tick]] = deque()
        self._wake = asyncio.Event()
        self._listings: list[SymbolInfo] = []
        self._prices: dict[str, float] = {}
        self._announced = False
        self._refresh_at = 0.0
        self._dropping = False
        self._append_script: AsyncScript | None = None
        self._writer: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Let the writer see at once that the link is closing."""
        self._wake.set()

    @property
    def _append(self) -> AsyncScript:
        if self._append_script is None:
            self._append_script = self.link.redis.register_script(APPEND_SCRIPT)
        return self._append_script

    async def announce(self, listings: Sequence[SymbolInfo], epoch: str) -> None:
        """Store the listings and epoch, and start the writer; Redis being down is not an error."""
        self.epoch = epoch
        self._listings = list(listings)
        self._prices = {info.symbol: info.price for info in listings}
        try:
            await self._announce()
        except REDIS_DOWN as exc:
            log.warning(
                "cannot announce on %s yet (%s); retrying in the background", self.link.where, exc
            )
        if self._writer is None:
            self._writer = self.link.spawn("Redis writer", self._write_loop)

    async def _announce(self) -> None:
        redis = self.link.redis
        epoch = self.epoch.encode()
        infos = [
            info.model_copy(update={"price": self._prices[info.symbol]}) for info in self._listings
        ]
        stored = cast(bytes | None, await redis.get(EPOCH_KEY))
        async with redis.pipeline(transaction=True) as pipe:
            if stored is not None and stored != epoch:
                # The previous feed run's seqs would read as newer than ours: drop its data.
                old = cast(bytes | None, await redis.get(LISTINGS_KEY))
                symbols = {i.symbol for i in self._listings}
                if old is not None:
                    with contextlib.suppress(ValidationError):  # garbage: nothing to delete
                        symbols.update(i.symbol for i in LISTINGS.validate_json(old))
                pipe.delete(FEED_STREAM, *(tick_stream(s) for s in sorted(symbols)))
                log.info(
                    "replacing epoch %s with %s on %s",
                    stored.decode(errors="replace"),
                    self.epoch,
                    self.link.where,
                )
            pipe.set(LISTINGS_KEY, LISTINGS.dump_json(infos))
            pipe.set(EPOCH_KEY, epoch)
            await pipe.execute()
        self._announced = True
        self._refresh_at = asyncio.get_running_loop().time() + LISTINGS_REFRESH

    def publish(self, ticks: Sequence[Tick]) -> None:
        """Queue a batch for the writer; past ``max_pending`` ticks the oldest batches go."""
        self._queue.append(ticks)
        self.pending += len(ticks)
        self._trim()
        self._wake.set()

    def _trim(self) -> None:
        while self.pending > self.max_pending and self._queue:
            lost = len(self._queue.popleft())
            if not self._dropping:
                log.warning("Redis is not keeping up: dropping the oldest queued ticks")
                self._dropping = True
            self.pending -= lost
            self.dropped += lost

    def _take(self) -> list[Tick]:
        ticks: list[Tick] = []
        while self._queue and len(ticks) < FLUSH_TICKS:
            ticks.extend(self._queue.popleft())
        self.pending -= len(ticks)
        return ticks

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(cap=self.backoff_cap)
        healthy = True
        link = self.link
        while not link.closing:
            if not self._queue:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEARTBEAT):
                        await self._wake.wait()
                if link.closing:
                    break
            ticks = self._take()
            try:
                if not self._announced or loop.time() >= self._refresh_at:
                    await self._announce()
                await self._flush(ticks)
            except REDIS_DOWN as exc:
                if ticks:
                    # Back at the front, then trimmed: the newest ticks are the ones worth keeping.
                    self._queue.appendleft(ticks)
                    self.pending += len(ticks)
                    self._trim()
                self._announced = False
                if healthy:
                    log.warning(
                        "Redis %s unreachable (%s); holding up to %d ticks",
                        link.where,
                        exc,
                        self.max_pending,
                    )
                    healthy = False
                await asyncio.sleep(backoff.next_delay())
                continue
            self._dropping = False
            if not healthy:
                self.reconnects += 1
                log.info(
                    "Redis %s reachable again; %d ticks dropped so far", link.where, self.dropped
                )
                healthy = True
            backoff.reset()

    async def _flush(self, ticks: list[Tick]) -> None:
        parts: list[bytes] = []
        keys: list[str] = [FEED_STREAM, EPOCH_KEY]
        prices = self._prices
        for t in ticks:
            parts.append(
                encode_tick(t.symbol, t.seq, t.ts, t.price, t.bid, t.ask, t.size, t.volume)
            )
            keys.append(tick_stream(t.symbol))
            prices[t.symbol] = t.price
        batch = b"[" + b",".join(parts) + b"]"
        stored = await self._append(keys, [self.keep, FEED_MAXLEN, self.epoch, batch, *parts])
        self.written += len(ticks)
        if stored != self.epoch.encode():
            # Redis restarted empty (or was flushed): announce again before the next flush.
            self._announced = False
