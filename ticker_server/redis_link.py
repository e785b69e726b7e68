"""What both sides of the Redis bus share: the key layout and one client with its tasks.

Keys (one feed per Redis database; a single Redis, not a Cluster):

* ``ticker:epoch``: the feed run's id. ``ticker:listings``: a JSON list of
  :class:`~.protocol.SymbolInfo` (names, last prices), refreshed every few seconds.
* ``ticker:ticks:SYM``: a stream per symbol, ``MAXLEN ~ history``, one entry per
  tick (field ``t``: its JSON), from which gateways fill their books.
* ``ticker:feed``: a stream, ``MAXLEN ~ 10000``, one entry per flush (``e``: the
  epoch, ``t``: a JSON array of its ticks, empty for the heartbeat written after
  a quiet second), which gateways follow with ``XREAD BLOCK``.

The feed side writes them (:mod:`.redis_feed`), the gateway side reads them
(:mod:`.redis_reader`); :class:`~.redis_bus.RedisBus` puts the two behind the
:class:`~.bus.Bus` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .config import redact_url
from .protocol import SymbolInfo

if TYPE_CHECKING:
    from .supervision import Supervisor

__all__ = [
    "BLOCK_MS",
    "EPOCH_KEY",
    "FEED_STREAM",
    "LISTINGS",
    "LISTINGS_KEY",
    "REDIS_DOWN",
    "Entry",
    "RedisLink",
    "tick_stream",
]

log = logging.getLogger("ticker_server.redis_bus")

EPOCH_KEY = "ticker:epoch"
LISTINGS_KEY = "ticker:listings"
FEED_STREAM = "ticker:feed"
BLOCK_MS = 1_000
"""How long a gateway's XREAD blocks; the socket timeout allows for it."""
Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry as the client returns it (responses are not decoded): its id and fields."""
LISTINGS: TypeAdapter[list[SymbolInfo]] = TypeAdapter(list[SymbolInfo])
REDIS_DOWN = (RedisError, OSError)
"""What an unreachable, restarting or misbehaving Redis raises."""


def tick_stream(symbol: str) -> str:
    """The key of a symbol's history stream."""
    return f"ticker:ticks:{symbol}"


class RedisLink:
    """One Redis client and the long-lived tasks that use it, closed together.

    Args:
        url: ``redis://HOST:PORT/DB`` (anything ``redis.asyncio.Redis.from_url`` takes).
        supervisor: restarts a task that fails (see :mod:`.supervision`); None: plain tasks.
    """

    def __init__(self, url: str, supervisor: Supervisor | None = None) -> None:
        self.url = url
        self.supervisor = supervisor
        self.where = redact_url(url)
        """The URL without its password, for logs."""
        self.closing = False
        """Set by :meth:`close`: every loop of the bus ends when it sees it."""
        self._redis: Redis | None = None
        self._tasks: set[asyncio.Task[None]] = set()

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
        """Stop the tasks and drop the connections, promptly even with Redis down."""
        self.closing = True
        tasks = set(self._tasks)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while tasks and loop.time() < deadline:
            # redis-py can swallow a cancellation that lands mid-command (redis/redis-py#2028),
            # so cancel until each task has ended; their loops also stop on `closing`.
            for task in tasks:
                task.cancel()
            _, tasks = await asyncio.wait(tasks, timeout=0.1)
        if tasks:
            log.error("%d bus tasks did not stop", len(tasks))
        if self._redis is not None:
            with contextlib.suppress(*REDIS_DOWN, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._redis.aclose()

    async def check(self) -> None:
        """Raise if Redis does not answer a PING within a few seconds."""
        async with asyncio.timeout(5.0):
            await self.redis.ping()

    def spawn(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        """Start a task that :meth:`close` stops (under the supervisor, if there is one)."""
        if self.supervisor is not None:
            task = self.supervisor.spawn(name, run, finished=lambda: self.closing)
        else:
            task = asyncio.get_running_loop().create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
