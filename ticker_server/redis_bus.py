"""The Redis bus: one feed process publishes, any number of gateway processes read.

:class:`RedisBus` is the :class:`~.bus.Bus` that ``--broker`` selects. It shares
one client (:class:`~.redis_link.RedisLink`, which also documents the keys)
between the two sides: :class:`~.redis_feed.RedisPublisher` writes a feed run's
listings and ticks, :class:`~.redis_reader.RedisReader` follows them for a
gateway. A process that runs both (no role given) uses both through one bus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .bus import EpochCallback, StatusCallback, TicksCallback
from .bus_guard import BusGuard
from .protocol import SymbolInfo, Tick
from .redis_feed import MAX_PENDING, RedisPublisher
from .redis_link import EPOCH_KEY, FEED_STREAM, LISTINGS_KEY, RedisLink, tick_stream
from .redis_reader import RedisReader

if TYPE_CHECKING:
    from .supervision import Supervisor

__all__ = ["EPOCH_KEY", "FEED_STREAM", "LISTINGS_KEY", "RedisBus", "tick_stream"]


class RedisBus:
    """:class:`~.bus.Bus` over Redis streams: a publisher and a reader on one client.

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
        self.link = RedisLink(url, supervisor)
        self.publisher = RedisPublisher(
            self.link, history=history, max_pending=max_pending, backoff_cap=backoff_cap
        )
        """The feed side: idle until :meth:`announce`."""
        self.reader = RedisReader(
            self.link,
            history=history,
            stale_after=stale_after,
            max_lag=max_lag,
            backoff_cap=backoff_cap,
        )
        """The gateway side: idle until :meth:`listings`."""

    @property
    def epoch(self) -> str:
        """The epoch served (gateway side), else the one announced (feed side)."""
        return self.reader.epoch or self.publisher.epoch

    # Counters, for tests and the metrics page (feed side, then gateway side).
    @property
    def pending(self) -> int:
        return self.publisher.pending

    @property
    def dropped(self) -> int:
        return self.publisher.dropped

    @property
    def written(self) -> int:
        return self.publisher.written

    @property
    def delivered(self) -> int:
        return self.reader.delivered

    @property
    def skips(self) -> int:
        return self.reader.skips

    @property
    def reconnects(self) -> int:
        """Times either side got Redis back after losing it."""
        return self.publisher.reconnects + self.reader.reconnects

    @property
    def guard(self) -> BusGuard:
        """Validates every entry the gateway side reads and keeps each symbol's last seq."""
        return self.reader.guard

    @property
    def rejected(self) -> dict[str, int]:
        """Entries the gateway side rejected, by reason (see :mod:`.bus_guard`)."""
        return self.reader.guard.rejected

    async def open(self) -> None:
        await self.link.open()

    async def close(self) -> None:
        """Stop the writer and reader and drop the connections, promptly even with Redis down."""
        self.publisher.wake()
        await self.link.close()

    async def check(self) -> None:
        await self.link.check()

    async def announce(self, listings: Sequence[SymbolInfo], epoch: str) -> None:
        await self.publisher.announce(listings, epoch)

    def publish(self, ticks: Sequence[Tick]) -> None:
        self.publisher.publish(ticks)

    async def listings(self) -> list[SymbolInfo]:
        return await self.reader.listings()

    async def history(self, symbol: str, count: int) -> list[Tick]:
        return await self.reader.history(symbol, count)

    def listen(
        self,
        on_ticks: TicksCallback,
        on_status: StatusCallback,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        self.reader.listen(on_ticks, on_status, on_epoch)
