"""Bars in Redis: the feed writes them; late gateways, or ones that missed ticks, read them.

Layout (every value is raw bytes, one bar = 36 bytes of :data:`~.bars.BAR_DTYPE`):

* ``ticker:bars:{symbol}:{interval}``: a list of the closed bars, oldest first,
  trimmed to the retention (the feed's capacity for that interval);
* ``ticker:bars:forming:{symbol}``: the last tick's seq (int64) then the forming
  bar of each interval in :data:`~.protocol.BAR_INTERVALS` order (``t = -1``: none);
* ``ticker:bars:epoch``: the feed epoch whose bars are complete in Redis.

The feed writes every :data:`FLUSH_PERIOD` in one MULTI per pass, so a reader
never sees closed bars without the forming bars and seq that go with them. Each
pass first reads the epoch key: when it is not the feed's (a Redis restart, a
flush, another run's data) the feed republishes everything it holds (the backfill
included) before it sets the key again. So Redis loses nothing the feed still has;
gateways wait for the key before they load, and keep their own bars meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .backoff import Backoff
from .bars import BAR_DTYPE, BarStore
from .config import redact_url
from .protocol import Tick

__all__ = ["BARS_EPOCH_KEY", "FLUSH_PERIOD", "RedisBarReader", "RedisBarWriter", "bars_key"]

log = logging.getLogger("ticker_server.redis_bars")

BARS_EPOCH_KEY = "ticker:bars:epoch"
FLUSH_PERIOD = 0.25
"""Seconds between the feed's writes of bars; a late gateway replays its own ticks over it."""
_REDIS_DOWN = (RedisError, OSError)
_NONE = (-1, 0, 0, 0, 0, 0, 0)


def _reraise_cancel(exc: BaseException | None = None) -> None:
    """redis-py may swallow a cancellation mid-command (or turn it into a connection error):
    a task asked to stop stops here."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def bars_key(symbol: str, interval: int) -> str:
    return f"ticker:bars:{symbol}:{interval}"


def _forming_key(symbol: str) -> str:
    return f"ticker:bars:forming:{symbol}"


def _pack_forming(store: BarStore, symbol: str) -> bytes:
    rows = [one.forming or _NONE for one in store.series[symbol].values()]
    return (
        struct.pack("<q", store.seq[symbol])
        + np.array([tuple(r) for r in rows], dtype=BAR_DTYPE).tobytes()
    )


class RedisBarWriter:
    """The feed side: keeps its own :class:`~.bars.BarStore` and mirrors it to Redis.

    Args:
        url: the broker URL.
        store: the feed's bars (fill it with the backfill before :meth:`start`).
        epoch: the feed's epoch.
    """

    def __init__(self, url: str, store: BarStore, epoch: str) -> None:
        self.store = store
        self.epoch = epoch
        self.where = redact_url(url)
        self.republished = 0
        """Times everything was written again (at start, and after Redis lost it)."""
        self._redis: Redis = Redis.from_url(url)
        self._dirty: set[str] = set(store.series)
        self._written = {
            (s, i): 0 for s, per in store.series.items() for i in per
        }  # closed bars written per series, as counted by closed_total

    def on_ticks(self, ticks: Sequence[Tick]) -> None:
        """Feed tap: take a batch into the store (written at the next pass)."""
        self._dirty |= self.store.ingest(ticks)

    async def run(self) -> None:
        """Write until cancelled; Redis being down only delays it."""
        backoff = Backoff(cap=5.0)
        healthy = True
        while True:
            try:
                await self.flush()
            except _REDIS_DOWN as exc:
                _reraise_cancel(exc)
                if healthy:
                    log.warning("cannot write bars to %s (%s); retrying", self.where, exc)
                healthy = False
                await asyncio.sleep(backoff.next_delay())
                continue
            _reraise_cancel()
            if not healthy:
                log.info("writing bars to %s again", self.where)
                healthy = True
            backoff.reset()
            await asyncio.sleep(FLUSH_PERIOD)

    async def close(self) -> None:
        await self._redis.aclose()

    async def flush(self) -> None:
        """One pass: what changed since the last, or everything when Redis lacks it."""
        stored = await self._redis.get(BARS_EPOCH_KEY)
        whole = stored != self.epoch.encode()
        dirty, self._dirty = (set(self.store.series) if whole else self._dirty), set()
        written: dict[tuple[str, int], int] = {}
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for symbol in dirty:
                    for interval, one in self.store.series[symbol].items():
                        key = bars_key(symbol, interval)
                        fresh = one.closed_total - (0 if whole else self._written[symbol, interval])
                        closed = one.closed[max(len(one.closed) - fresh, 0) :] if fresh else None
                        if whole:
                            pipe.delete(key)
                        if closed is not None and len(closed):
                            pipe.rpush(key, *(row.tobytes() for row in closed))
                            pipe.ltrim(key, -one.capacity, -1)
                        written[symbol, interval] = one.closed_total
                    pipe.set(_forming_key(symbol), _pack_forming(self.store, symbol))
                if whole:
                    pipe.set(BARS_EPOCH_KEY, self.epoch)
                await pipe.execute()
        except BaseException:
            self._dirty |= dirty
            raise
        self._written.update(written)
        if whole:
            self.republished += 1
            log.info("wrote every bar of %d symbols to %s", len(dirty), self.where)


class RedisBarReader:
    """The gateway side: loads the feed's bars into the gateway's store, and again for any
    symbol whose ticks skipped a seq (ticks lost while Redis was away).

    Args:
        url: the broker URL.
        store: the gateway's bars.
        epoch: the feed epoch being served.
    """

    def __init__(self, url: str, store: BarStore, epoch: str) -> None:
        self.store = store
        self.epoch = epoch
        self.where = redact_url(url)
        self.loads = 0
        self._redis: Redis = Redis.from_url(url)

    async def close(self) -> None:
        await self._redis.aclose()

    async def load(self, symbols: Iterable[str] | None = None, wait: float = 10.0) -> bool:
        """Restore ``symbols`` (default all) from Redis once the feed's bars are complete there.

        Returns False when they were not within ``wait`` seconds (the store keeps what it has).
        """
        chosen = list(self.store.series if symbols is None else symbols)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        backoff = Backoff(0.05, 1.0)
        while True:
            try:
                if await self._redis.get(BARS_EPOCH_KEY) == self.epoch.encode():
                    replies = await self._read(chosen)
                    if replies is not None:
                        break
            except _REDIS_DOWN as exc:
                _reraise_cancel(exc)
                log.debug("cannot read bars from %s: %s", self.where, exc)
            _reraise_cancel()
            if loop.time() >= deadline:
                if wait > 0:
                    log.warning("no complete bars on %s yet; loading them later", self.where)
                self.store.gaps.update(chosen)  # the run loop tries again every second
                return False
            await asyncio.sleep(backoff.next_delay())
        for symbol, (closed, forming, seq) in replies.items():
            self.store.restore(symbol, closed, forming, seq)
        self.loads += 1
        return True

    async def _read(
        self, symbols: list[str]
    ) -> dict[str, tuple[dict[int, Any], dict[int, Sequence[int] | None], int]] | None:
        intervals = self.store.intervals
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(BARS_EPOCH_KEY)
            for symbol in symbols:
                for interval in intervals:
                    pipe.lrange(bars_key(symbol, interval), 0, -1)
                pipe.get(_forming_key(symbol))
            replies: list[Any] = await pipe.execute()
        if replies[0] != self.epoch.encode():
            return None  # lost between the check and the read: try again
        out = {}
        at = 1
        for symbol in symbols:
            closed = {
                i: np.frombuffer(b"".join(replies[at + k]), dtype=BAR_DTYPE)
                for k, i in enumerate(intervals)
            }
            packed = replies[at + len(intervals)]
            at += len(intervals) + 1
            if packed is None:
                return None
            seq = struct.unpack_from("<q", packed)[0]
            rows = np.frombuffer(packed, dtype=BAR_DTYPE, offset=8).tolist()
            forming: dict[int, Sequence[int] | None] = {
                i: (None if row[0] < 0 else row) for i, row in zip(intervals, rows, strict=True)
            }
            out[symbol] = (closed, forming, seq)
        return out

    def rebind(self, store: BarStore, epoch: str) -> None:
        """Serve a new feed run: its bars go into ``store``, loaded by the next pass."""
        self.store, self.epoch = store, epoch
        store.gaps.update(store.series)

    async def run(self) -> None:
        """Restore symbols with a gap in their ticks, once a second, until cancelled."""
        while True:
            await asyncio.sleep(1.0)
            if self.store.gaps:
                gaps = sorted(self.store.gaps)
                if await self.load(gaps, wait=0.0):
                    log.info("restored the bars of %d symbols after a gap", len(gaps))
                _reraise_cancel()
