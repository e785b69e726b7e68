"""The Redis bus: one feed process publishes, any number of gateway processes read.

Keys (one feed per Redis database; a single Redis, not a Cluster):

* ``ticker:epoch``: the feed run's id. ``ticker:listings``: a JSON list of
  :class:`~.protocol.SymbolInfo` (names, last prices), refreshed every few seconds.
* ``ticker:ticks:SYM``: a stream per symbol, ``MAXLEN ~ history``, one entry per
  tick (field ``t``: its JSON), from which gateways fill their books.
* ``ticker:feed``: a stream, ``MAXLEN ~ 10000``, one entry per flush (``e``: the
  epoch, ``t``: a JSON array of its ticks, empty for the heartbeat written after
  a quiet second), which gateways follow with ``XREAD BLOCK``.

Feed side: :meth:`RedisBus.publish` never awaits. It queues the batch (past
``max_pending`` ticks the oldest batches are dropped and counted) and one writer
task flushes the queue as one Lua call: an ``XADD`` per tick to its symbol's
stream, then one to the feed stream, returning the stored epoch so that an empty,
restarted Redis is announced to again. Each tick is encoded once. A new epoch
deletes the previous run's streams when it announces.

Gateway side: :meth:`RedisBus.listings` waits for an announce and notes the feed
stream's newest id before the caller reads the history, so nothing in between
is missed; repeats are dropped (only seqs newer than those delivered go on). One
reader task follows the feed stream ``READ_COUNT`` entries at a time, so memory
stays bounded; more than ``max_lag`` seconds behind, it skips to each symbol's
newest tick (clients see one merged update). On a Redis error it reports the
feed unavailable once, retries with exponential backoff and jitter, then reloads
the history streams (what it missed, if still kept) and reports the feed back.
No feed entry for ``stale_after`` seconds also counts as unavailable. A new epoch
(the feed restarted, seqs begin again at 1) goes to ``on_epoch`` before any of
its ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, cast

from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .backoff import Backoff
from .bus import EpochCallback, StatusCallback, TicksCallback
from .bus_guard import BusGuard
from .config import redact_url
from .protocol import SymbolInfo, Tick, encode_tick

if TYPE_CHECKING:
    from .supervision import Supervisor

__all__ = [
    "EPOCH_KEY",
    "FEED_STREAM",
    "LISTINGS_KEY",
    "Backoff",
    "RedisBus",
    "tick_stream",
]

log = logging.getLogger("ticker_server.redis_bus")

EPOCH_KEY = "ticker:epoch"
LISTINGS_KEY = "ticker:listings"
FEED_STREAM = "ticker:feed"
FEED_MAXLEN = 10_000
"""Flushes kept in the feed stream (roughly: what a briefly disconnected gateway can re-read)."""
MAX_PENDING = 10_000
"""Ticks the feed holds while Redis is unreachable; older ones are dropped."""
FLUSH_TICKS = 1_000
"""Most ticks written by one pipeline (and carried by one feed entry)."""
READ_COUNT = 64
"""Feed entries per XREAD: bounds what a gateway holds at once."""
BLOCK_MS = 1_000
HEARTBEAT = 1.0
"""Seconds without ticks after which the feed writes an empty entry."""
WAIT_LOG_PERIOD = 5.0
CATCH_UP_CHUNK = 100
"""History entries read per symbol and round trip when catching up."""
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
_Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry as the client returns it (responses are not decoded): its id and fields."""
_LISTINGS: TypeAdapter[list[SymbolInfo]] = TypeAdapter(list[SymbolInfo])
_REDIS_DOWN = (RedisError, OSError)
"""What an unreachable, restarting or misbehaving Redis raises."""


def tick_stream(symbol: str) -> str:
    """The key of a symbol's history stream."""
    return f"ticker:ticks:{symbol}"


def _id_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


class _NotAnnounced(Exception):
    """Redis answers but holds no valid announce (no feed yet, or Redis restarted empty)."""


class _EpochSeen(Exception):
    """A feed entry carries an epoch other than the one being served."""

    def __init__(self, epoch: bytes) -> None:
        super().__init__(epoch.decode(errors="replace"))
        self.epoch = epoch


class RedisBus:
    """:class:`~.bus.Bus` over Redis streams (see the module docstring for the layout).

    Args:
        url: ``redis://HOST:PORT/DB`` (anything ``redis.asyncio.Redis.from_url`` takes).
        history: ticks kept per symbol stream (feed side) and read per symbol (gateway side).
        max_pending: ticks the feed queues while Redis is slow or unreachable.
        stale_after: seconds without a feed entry before a gateway reports the feed unavailable.
        max_lag: seconds behind the feed stream after which a gateway skips ahead.
        backoff_cap: longest wait between reconnect attempts, in seconds.
        supervisor: restarts the writer and reader if one fails (see :mod:`.supervision`).
    """

    def __init__(
        self,
        url: str,
        *,
        history: int = 1000,
        max_pending: int = MAX_PENDING,
        stale_after: float = 5.0,
        max_lag: float = 2.0,
        backoff_cap: float = 5.0,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.url = url
        self.supervisor = supervisor
        self.where = redact_url(url)
        """The URL without its password, for logs."""
        self.keep = history
        """Ticks kept per symbol stream (feed side), and read per symbol to catch up (gateway)."""
        self.max_pending = max_pending
        self.stale_after = stale_after
        self.max_lag = max_lag
        self.backoff_cap = backoff_cap
        self.epoch = ""
        self.pending = 0
        """Ticks queued on the feed side (at most ``max_pending``, plus one flush under way)."""
        self.dropped = 0
        """Ticks the feed side dropped because Redis could not take them in time."""
        self.written = 0
        """Ticks the feed side wrote to Redis."""
        self.delivered = 0
        """Ticks the gateway side passed to its callback."""
        self.skips = 0
        """Times the gateway side fell too far behind and skipped ahead."""
        self.reconnects = 0
        """Times either side got Redis back after losing it."""
        self._redis: Redis | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        # feed side
        self._queue: deque[Sequence[Tick]] = deque()
        self._wake = asyncio.Event()
        self._listings: list[SymbolInfo] = []
        self._prices: dict[str, float] = {}
        self._announced = False
        self._refresh_at = 0.0
        self._dropping = False
        self._append_script: AsyncScript | None = None
        self._writer: asyncio.Task[None] | None = None
        # gateway side
        self._symbols: list[str] = []
        self._cursor: bytes | None = None
        self.guard = BusGuard(history, log)
        """Validates every entry read and keeps each symbol's last seq."""
        self._stale_epochs: set[bytes] = set()

    @property
    def rejected(self) -> dict[str, int]:
        """Entries the gateway side rejected, by reason (see :mod:`.bus_guard`)."""
        return self.guard.rejected

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("RedisBus.open() was not called")
        return self._redis

    async def open(self) -> None:
        """Create the client; connections are made (and remade) on use."""
        self._redis = Redis.from_url(
            self.url,
            socket_connect_timeout=2.0,
            socket_timeout=BLOCK_MS / 1000 + 4.0,
            socket_keepalive=True,
            # The bus runs its own reconnect loops, with status reports and backoff.
            retry=Retry(NoBackoff(), 0),
            client_name="ticker",
        )

    async def close(self) -> None:
        """Stop the writer and reader and drop the connections, promptly even with Redis down."""
        self._closing = True
        self._wake.set()
        tasks = set(self._tasks)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while tasks and loop.time() < deadline:
            # redis-py can swallow a cancellation that lands mid-command (redis/redis-py#2028),
            # so cancel until each task has ended; their loops also stop on _closing.
            for task in tasks:
                task.cancel()
            _, tasks = await asyncio.wait(tasks, timeout=0.1)
        if tasks:
            log.error("%d bus tasks did not stop", len(tasks))
        if self._redis is not None:
            with contextlib.suppress(*_REDIS_DOWN, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._redis.aclose()

    async def check(self) -> None:
        """Raise if Redis does not answer a PING within a few seconds."""
        async with asyncio.timeout(5.0):
            await self.redis.ping()

    def _spawn(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        if self.supervisor is not None:
            task = self.supervisor.spawn(name, run, finished=lambda: self._closing)
        else:
            task = asyncio.get_running_loop().create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the feed side ---------------------------------------------------------------

    @property
    def _append(self) -> AsyncScript:
        if self._append_script is None:
            self._append_script = self.redis.register_script(APPEND_SCRIPT)
        return self._append_script

    async def announce(self, listings: Sequence[SymbolInfo], epoch: str) -> None:
        """Store the listings and epoch, and start the writer; Redis being down is not an error."""
        self.epoch = epoch
        self._listings = list(listings)
        self._prices = {info.symbol: info.price for info in listings}
        try:
            await self._announce()
        except _REDIS_DOWN as exc:
            log.warning(
                "cannot announce on %s yet (%s); retrying in the background", self.where, exc
            )
        if self._writer is None:
            self._writer = self._spawn("Redis writer", self._write_loop)

    async def _announce(self) -> None:
        epoch = self.epoch.encode()
        infos = [
            info.model_copy(update={"price": self._prices[info.symbol]}) for info in self._listings
        ]
        stored = cast(bytes | None, await self.redis.get(EPOCH_KEY))
        async with self.redis.pipeline(transaction=True) as pipe:
            if stored is not None and stored != epoch:
                # The previous feed run's seqs would read as newer than ours: drop its data.
                old = cast(bytes | None, await self.redis.get(LISTINGS_KEY))
                symbols = {i.symbol for i in self._listings}
                if old is not None:
                    with contextlib.suppress(ValidationError):  # garbage: nothing to delete
                        symbols.update(i.symbol for i in _LISTINGS.validate_json(old))
                pipe.delete(FEED_STREAM, *(tick_stream(s) for s in sorted(symbols)))
                log.info(
                    "replacing epoch %s with %s on %s",
                    stored.decode(errors="replace"),
                    self.epoch,
                    self.where,
                )
            pipe.set(LISTINGS_KEY, _LISTINGS.dump_json(infos))
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
        while not self._closing:
            if not self._queue:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEARTBEAT):
                        await self._wake.wait()
                if self._closing:
                    break
            ticks = self._take()
            try:
                if not self._announced or loop.time() >= self._refresh_at:
                    await self._announce()
                await self._flush(ticks)
            except _REDIS_DOWN as exc:
                if ticks:
                    # Back at the front, then trimmed: the newest ticks are the ones worth keeping.
                    self._queue.appendleft(ticks)
                    self.pending += len(ticks)
                    self._trim()
                self._announced = False
                if healthy:
                    log.warning(
                        "Redis %s unreachable (%s); holding up to %d ticks",
                        self.where,
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
                    "Redis %s reachable again; %d ticks dropped so far", self.where, self.dropped
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

    # -- the gateway side ---------------------------------------------------------------

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
            except _REDIS_DOWN as exc:
                reason = f"Redis unreachable: {exc}"
            if loop.time() >= next_log:
                log.info(
                    "still waiting for a feed on %s after %.0f s (%s)",
                    self.where,
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
        except _REDIS_DOWN as exc:
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
        self._spawn("Redis reader", lambda: self._read_loop(on_ticks, on_status, on_epoch))

    async def _read_announce(self) -> tuple[str, list[SymbolInfo]]:
        reply = await self.redis.mget(EPOCH_KEY, LISTINGS_KEY)
        epoch, listings = cast(list[bytes | None], reply)
        if epoch is None or listings is None:
            raise _NotAnnounced
        try:
            return epoch.decode(errors="replace"), _LISTINGS.validate_json(listings)
        except ValidationError as exc:
            self.guard.reject("listings", f"{LISTINGS_KEY}: {exc.errors()[0]['msg']}")
            raise _NotAnnounced(f"the listings in {LISTINGS_KEY} are invalid") from None

    async def _newest(self, key: str, count: int) -> list[_Entry]:
        """The newest ``count`` entries of a stream, newest first."""
        return cast(list[_Entry], await self.redis.xrevrange(key, count=count))

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
        while not self._closing:
            try:
                if not synced:
                    await self._sync(on_ticks, on_epoch, seen_epoch)
                    synced, seen_epoch = True, None
                    last_entry = loop.time()
                    if backoff.attempt:
                        self.reconnects += 1
                        log.info("following the feed on %s again", self.where)
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
            except _REDIS_DOWN as exc:
                reason = f"Redis unreachable ({type(exc).__name__}: {exc})"
            if synced or backoff.attempt == 0:
                log.warning("lost the feed on %s: %s", self.where, reason)
            synced = False
            report(False, reason)
            await asyncio.sleep(backoff.next_delay())

    async def _read(self, on_ticks: TicksCallback) -> bool:
        """One XREAD of the feed stream; True if it returned entries."""
        assert self._cursor is not None
        reply = await self.redis.xread(
            {FEED_STREAM: self._cursor}, count=READ_COUNT, block=BLOCK_MS
        )
        if not reply:
            return False
        epoch = self.epoch.encode()
        entries = cast(list[tuple[bytes, list[_Entry]]], reply)[0][1]
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
            async with self.redis.pipeline(transaction=False) as pipe:
                for symbol, high in upper.items():
                    pipe.xrevrange(tick_stream(symbol), max=high, count=chunk)
                replies = cast(list[list[_Entry]], await pipe.execute())
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
