"""The gateway side of the Redis bus: follow one feed run's listings and ticks.

:meth:`RedisReader.listings` waits for an announce and notes the feed stream's
newest id before the caller reads the history, so nothing in between is missed;
repeats are dropped (only seqs newer than those delivered go on). One reader
task follows the feed stream ``READ_COUNT`` entries at a time, so memory stays
bounded; more than ``max_lag`` seconds behind, it skips to each symbol's newest
tick (clients see one merged update). On a Redis error it reports the feed
unavailable once, retries with exponential backoff and jitter, then reloads the
history streams (what it missed, if still kept) and reports the feed back. No
feed entry for ``stale_after`` seconds also counts as unavailable. A new epoch
(the feed restarted, seqs begin again at 1) goes to ``on_epoch`` before any of
its ticks. (Keys: :mod:`.redis_link`.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from pydantic import ValidationError

from .backoff import Backoff
from .bus import EpochCallback, StatusCallback, TicksCallback
from .bus_guard import BusGuard
from .protocol import SymbolInfo, Tick
from .redis_link import (
    BLOCK_MS,
    EPOCH_KEY,
    FEED_STREAM,
    LISTINGS,
    LISTINGS_KEY,
    REDIS_DOWN,
    Entry,
    RedisLink,
    tick_stream,
)

__all__ = ["CATCH_UP_CHUNK", "READ_COUNT", "RedisReader"]

log = logging.getLogger("ticker_server.redis_bus.reader")

READ_COUNT = 64
"""Feed entries per XREAD: bounds what a gateway holds at once."""
WAIT_LOG_PERIOD = 5.0
CATCH_UP_CHUNK = 100
"""History entries read per symbol and round trip when catching up."""


def _id_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


class _NotAnnounced(Exception):
    """Redis answers but holds no valid announce (no feed yet, or Redis restarted empty)."""


class _EpochSeen(Exception):
    """A feed entry carries an epoch other than the one being served."""

    def __init__(self, epoch: bytes) -> None:
        super().__init__(epoch.decode(errors="replace"))
        self.epoch = epoch


class RedisReader:
    """Follows the feed stream for one gateway and hands it on, validated and in seq order.

    Args:
        link: the client and task owner shared with the feed side.
        history: ticks read per symbol to catch up.
        stale_after: seconds without a feed entry before the feed is reported unavailable.
        max_lag: seconds behind the feed stream after which the reader skips ahead.
        backoff_cap: longest wait between reconnect attempts, in seconds.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        history: int = 1000,
        stale_after: float = 5.0,
        max_lag: float = 2.0,
        backoff_cap: float = 5.0,
    ) -> None:
        self.link = link
        self.keep = history
        self.stale_after = stale_after
        self.max_lag = max_lag
        self.backoff_cap = backoff_cap
        self.epoch = ""
        """The epoch being served (empty before :meth:`listings`)."""
        self.delivered = 0
        """Ticks passed to the callback."""
        self.skips = 0
        """Times the reader fell too far behind and skipped ahead."""
        self.reconnects = 0
        """Times the reader got Redis back after losing it."""
        self.guard = BusGuard(history, log)
        """Validates every entry read and keeps each symbol's last seq."""
        self._symbols: list[str] = []
        self._cursor: bytes | None = None
        self._stale_epochs: set[bytes] = set()

    async def listings(self) -> list[SymbolInfo]:
        """The announced listings; waits for a feed, and for Redis, logging every few seconds."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(0.05, min(self.backoff_cap, 1.0))
        started = loop.time()
        next_log = started + WAIT_LOG_PERIOD
        while True:
            try:
                epoch, infos = await self._read_announce()
                self._cursor = await self._newest_id()
                break
            except _NotAnnounced as exc:
                reason = str(exc) or "no feed has announced yet"
            except REDIS_DOWN as exc:
                reason = f"Redis unreachable: {exc}"
            if loop.time() >= next_log:
                log.info(
                    "still waiting for a feed on %s after %.0f s (%s)",
                    self.link.where,
                    loop.time() - started,
                    reason,
                )
                next_log = loop.time() + WAIT_LOG_PERIOD
            await asyncio.sleep(backoff.next_delay())
        self.epoch = epoch
        self._symbols = [info.symbol for info in infos]
        self.guard.reset(self._symbols)
        return infos

    async def history(self, symbol: str, count: int) -> list[Tick]:
        """Up to ``count`` recent ticks of ``symbol``, oldest first.

        If Redis fails, this returns nothing and the reader catches up on its
        own once Redis is back, so a gateway can still start.
        """
        if count <= 0:
            return []
        try:
            entries = await self._newest(tick_stream(symbol), count)
        except REDIS_DOWN as exc:
            log.warning("cannot read the history of %s (%s); catching up later", symbol, exc)
            self._cursor = None
            return []
        ticks = self.guard.history(symbol, [fields for _, fields in entries])
        self.guard.anchor(symbol, ticks)
        return self.guard.admit(ticks)

    def listen(
        self,
        on_ticks: TicksCallback,
        on_status: StatusCallback,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        """Start the reader task that follows the feed stream."""
        self.link.spawn("Redis reader", lambda: self._read_loop(on_ticks, on_status, on_epoch))

    async def _read_announce(self) -> tuple[str, list[SymbolInfo]]:
        reply = await self.link.redis.mget(EPOCH_KEY, LISTINGS_KEY)
        epoch, listings = cast(list[bytes | None], reply)
        if epoch is None or listings is None:
            raise _NotAnnounced
        try:
            return epoch.decode(errors="replace"), LISTINGS.validate_json(listings)
        except ValidationError as exc:
            self.guard.reject("listings", f"{LISTINGS_KEY}: {exc.errors()[0]['msg']}")
            raise _NotAnnounced(f"the listings in {LISTINGS_KEY} are invalid") from None

    async def _newest(self, key: str, count: int) -> list[Entry]:
        """The newest ``count`` entries of a stream, newest first."""
        return cast(list[Entry], await self.link.redis.xrevrange(key, count=count))

    async def _newest_id(self) -> bytes:
        newest = await self._newest(FEED_STREAM, 1)
        return newest[0][0] if newest else b"0-0"

    async def _read_loop(
        self, on_ticks: TicksCallback, on_status: StatusCallback, on_epoch: EpochCallback | None
    ) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(cap=self.backoff_cap)
        available = True

        def report(ok: bool, reason: str) -> None:
            nonlocal available
            if ok != available:
                available = ok
                on_status(ok, reason)

        synced = self._cursor is not None  # listings() noted where the caller's history ends
        seen_epoch: bytes | None = None
        last_entry = loop.time()
        while not self.link.closing:
            try:
                if not synced:
                    await self._sync(on_ticks, on_epoch, seen_epoch)
                    synced, seen_epoch = True, None
                    last_entry = loop.time()
                    if backoff.attempt:
                        self.reconnects += 1
                        log.info("following the feed on %s again", self.link.where)
                        backoff.reset()
                    report(True, "feed available")
                if await self._read(on_ticks):
                    last_entry = loop.time()
                    report(True, "feed available")
                elif loop.time() - last_entry >= self.stale_after:
                    report(False, f"no data from the feed for {self.stale_after:g} s")
                continue
            except _EpochSeen as exc:
                synced, seen_epoch = False, exc.epoch
                continue
            except _NotAnnounced as exc:
                # Redis is back but empty: the feed announces again within its own backoff.
                synced = False
                report(False, str(exc) or "no feed announced on Redis")
                await asyncio.sleep(min(backoff.next_delay(), 0.5))
                continue
            except REDIS_DOWN as exc:
                reason = f"Redis unreachable ({type(exc).__name__}: {exc})"
            if synced or backoff.attempt == 0:
                log.warning("lost the feed on %s: %s", self.link.where, reason)
            synced = False
            report(False, reason)
            await asyncio.sleep(backoff.next_delay())

    async def _read(self, on_ticks: TicksCallback) -> bool:
        """One XREAD of the feed stream; True if it returned entries."""
        assert self._cursor is not None
        reply = await self.link.redis.xread(
            {FEED_STREAM: self._cursor}, count=READ_COUNT, block=BLOCK_MS
        )
        if not reply:
            return False
        epoch = self.epoch.encode()
        entries = cast(list[tuple[bytes, list[Entry]]], reply)[0][1]
        cursor = self._cursor
        for entry_id, fields in entries:
            stamp = fields.get(b"e", b"")
            if stamp != epoch and stamp not in self._stale_epochs:
                self._cursor = cursor
                raise _EpochSeen(stamp)
            cursor = entry_id
            data = fields.get(b"t")
            if stamp != epoch:
                self.guard.reject("stale_epoch", f"entry {entry_id.decode()}")
            elif data and data != b"[]":
                self._deliver(self.guard.batch(data), on_ticks)
        self._cursor = cursor
        if len(entries) == READ_COUNT:
            newest = await self._newest_id()
            lag = (_id_ms(newest) - _id_ms(cursor)) / 1000
            if lag > self.max_lag:
                self.skips += 1
                log.warning("%.1f s behind the feed stream: skipping to the newest ticks", lag)
                await self._sync(on_ticks, None, None, count=1)
        return True

    async def _sync(
        self,
        on_ticks: TicksCallback,
        on_epoch: EpochCallback | None,
        seen_epoch: bytes | None,
        count: int | None = None,
    ) -> None:
        """Catch up from the announce and ``count`` ticks of each history stream (default: all
        kept); continue from the feed stream's newest entry."""
        epoch, infos = await self._read_announce()
        if epoch != self.epoch:
            log.warning("the feed restarted: epoch %s -> %s", self.epoch, epoch)
            self.epoch = epoch
            self._symbols = [info.symbol for info in infos]
            self.guard.reset(self._symbols)
            self._stale_epochs.clear()
            if on_epoch is not None:
                on_epoch(epoch, infos)
        elif seen_epoch is not None:
            if len(self._stale_epochs) >= 64:  # forged stamps must not grow it without bound
                self._stale_epochs.clear()
            self._stale_epochs.add(seen_epoch)
            log.warning("ignoring feed entries of epoch %r (announced: %s)", seen_epoch[:40], epoch)
        cursor = await self._newest_id()
        for symbol, ticks in (await self._missed(count or self.keep)).items():
            if count is None:  # a full catch-up may find the stream trimmed past what was seen
                self.guard.anchor(symbol, ticks)
            self._deliver(ticks, on_ticks)
        self._cursor = cursor

    async def _missed(self, limit: int) -> dict[str, list[Tick]]:
        """Each symbol's ticks since the last delivered (at most ``limit``), oldest first.

        The streams are read backwards in chunks: after a short outage that is
        one chunk per symbol, not the whole history (parsing costs ~20 us per entry).
        """
        chunk = min(limit, CATCH_UP_CHUNK)
        found: dict[str, list[Tick]] = {symbol: [] for symbol in self._symbols}
        read = dict.fromkeys(self._symbols, 0)
        upper: dict[str, bytes] = {symbol: b"+" for symbol in self._symbols}
        while upper:
            async with self.link.redis.pipeline(transaction=False) as pipe:
                for symbol, high in upper.items():
                    pipe.xrevrange(tick_stream(symbol), max=high, count=chunk)
                replies = cast(list[list[Entry]], await pipe.execute())
            more: dict[str, bytes] = {}
            for symbol, entries in zip(upper, replies, strict=True):
                ticks = self.guard.history(symbol, [fields for _, fields in entries])
                found[symbol][:0] = ticks
                read[symbol] += len(entries)
                if (
                    len(entries) == chunk
                    and read[symbol] < limit
                    and (not ticks or ticks[0].seq > self.guard.seen.get(symbol, 0) + 1)
                ):
                    more[symbol] = b"(" + entries[-1][0]
            upper = more
        return found

    def _deliver(self, ticks: list[Tick], on_ticks: TicksCallback) -> None:
        fresh = self.guard.admit(ticks)
        if fresh:
            self.delivered += len(fresh)
            on_ticks(fresh)
