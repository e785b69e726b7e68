"""Wiring: a bus, the feed and/or a gateway, and the WebSocket server around them."""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from .backfill import Backfill
from .bars import BarStore
from .bus import Bus, LocalBus
from .clock import steady_wall_clock
from .config import ServerConfig, redact_url
from .connection import ConnectionSettings, WebSocketServer, deflate
from .feed import Feed
from .gateway import Gateway
from .history import make_backfill, publish_history, release_heap
from .market import Listing, Market, listings_for
from .protocol import MAX_FRAME, SymbolInfo
from .service import ServiceEndpoints
from .supervision import Supervisor

if TYPE_CHECKING:
    from .redis_bars import RedisBarReader, RedisBarWriter

__all__ = ["ServerConfig", "StartupError", "TickerServer", "make_bus"]

log = logging.getLogger("ticker_server")

CLOSE_TIMEOUT = 5.0
"""Seconds a client closed by the server has to read what is queued and answer the close."""


class StartupError(Exception):
    """The server cannot start (port taken, bad certificate, Redis unreachable for a feed);
    the message says why in one line. Nothing is left running."""


def make_bus(config: ServerConfig, supervisor: Supervisor | None = None) -> Bus:
    """The in-process bus, or Redis when a broker URL is given."""
    if config.broker is None:
        return LocalBus()
    from .redis_bus import RedisBus

    return RedisBus(config.broker, history=config.history, supervisor=supervisor)


class TickerServer:
    """One ticker process: the feed, a gateway, or both (the default), on one bus.

    Use as ``async with TickerServer(config) as server:`` or call :meth:`start`
    and :meth:`stop`. After start, :attr:`url` and :attr:`port` tell where it
    listens (a feed-only process does not listen).

    Args:
        config: the settings.
        clock: wall-clock seconds for tick timestamps and schedules; by default one
            that never steps (see :func:`~.clock.steady_wall_clock`).
        supervisor: owns the long-lived tasks (one with shorter delays in tests).
    """

    def __init__(
        self,
        config: ServerConfig,
        clock: Callable[[], float] | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or steady_wall_clock()
        self.supervisor = supervisor or Supervisor()
        self.bus: Bus | None = None
        self.feed: Feed | None = None
        self.gateway: Gateway | None = None
        self.port = 0
        self.started_at = 0.0
        self._server: WebSocketServer | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self.bar_writer: RedisBarWriter | None = None
        self.bar_reader: RedisBarReader | None = None
        self._bar_tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return f"{self.config.scheme}://{self.config.host}:{self.port}"

    async def start(self) -> None:
        """Start everything, or raise :class:`StartupError` having stopped what had started."""
        try:
            await self._start()
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, ssl.SSLError):
                raise StartupError(
                    f"cannot load --certfile {self.config.certfile} and --keyfile "
                    f"{self.config.keyfile}: {exc}"
                ) from exc
            if isinstance(exc, OSError):
                raise StartupError(str(exc)) from exc
            raise

    async def _start(self) -> None:
        config = self.config
        self.started_at = self.clock()
        endpoints = ServiceEndpoints(self)
        ssl_context = endpoints.ssl_context()  # a bad certificate fails before anything starts
        try:
            self.bus = bus = make_bus(config, self.supervisor)
            await bus.open()
        except ValueError as exc:  # redis-py's verdict on the URL
            raise StartupError(f"--broker {redact_url(config.broker or '')}: {exc}") from exc
        if config.role in ("all", "feed") and config.broker is not None:
            try:
                await bus.check()
            except Exception as exc:
                where = redact_url(config.broker)
                raise StartupError(
                    f"a feed needs Redis, and {where} is unreachable: {exc}"
                ) from exc
        backfill: Backfill | None = None
        if config.role in ("all", "feed"):
            start = self.clock()
            listings = listings_for(config.symbols, config.seed)
            market = Market(
                listings,
                tick_rate=config.tick_rate,
                start=start,
                rng=np.random.default_rng(config.seed),
            )
            backfill = make_backfill(config, listings, start, market)
            epoch = f"{int(start):x}-{secrets.token_hex(3)}"
            self.feed = Feed(market, bus, epoch, self.clock)
            await self.feed.announce()
            if config.broker is not None:
                await self._wire_bar_writer(config.broker, listings, backfill, epoch)
        if config.role in ("all", "gateway"):
            if config.role == "gateway":
                log.info(
                    "waiting for a feed to announce its symbols on %s",
                    redact_url(config.broker or ""),
                )
            infos = await bus.listings()
            gateway = Gateway(config, infos, bus.epoch, self.clock)
            if backfill is not None:
                backfill.fill(gateway.live_bars.store)
                gateway.on_ticks(backfill.tail(config.history))
            if config.broker is not None:
                await self._wire_bar_reader(config.broker, gateway, bus.epoch)
            for symbol in gateway.listings:
                gateway.on_ticks(await bus.history(symbol, config.history))
            bus.listen(gateway.on_ticks, gateway.on_status, self._on_epoch)
            gateway.start(self.supervisor)
            self.gateway = gateway
            settings = ConnectionSettings(
                on_request=endpoints.process_request,
                on_open=gateway.on_open,
                origins=endpoints.origins,
                extensions=deflate() if config.compression else None,
                max_size=MAX_FRAME,
                open_timeout=config.open_timeout,
                close_timeout=CLOSE_TIMEOUT,
                # Above max_buffer the transport pauses and the gateway blocks the client; below
                # half of it, it resumes and the gateway's upkeep pass unblocks it.
                write_limits=(config.max_buffer, config.max_buffer // 2),
            )
            self._server = WebSocketServer(settings)
            self.port = await self._server.listen(config.host, config.port, ssl_context)
            log.info("serving %s", self.url)
        if backfill is not None:
            del backfill
            release_heap()
        if self.feed is not None:
            self._feed_task = self.supervisor.spawn("feed", self.feed.run)

    async def _wire_bar_writer(
        self, url: str, listings: list[Listing], backfill: Backfill | None, epoch: str
    ) -> None:
        """The feed's own bars, mirrored to Redis; the backfill's tail goes to the tick history."""
        from .redis_bars import RedisBarWriter  # redis-py only where a broker is used

        store = BarStore([x.symbol for x in listings], self.config.bar_retention)
        if backfill is not None:
            backfill.fill(store)
            assert self.bus is not None
            await publish_history(self.bus, backfill.tail(self.config.history))
        self.bar_writer = writer = RedisBarWriter(url, store, epoch)
        assert self.feed is not None
        self.feed.taps.append(writer.on_ticks)
        self._bar_tasks.append(self.supervisor.spawn("Redis bar writer", writer.run))

    async def _wire_bar_reader(self, url: str, gateway: Gateway, epoch: str) -> None:
        """A gateway without the feed loads its bars from Redis, and again after a gap."""
        from .redis_bars import RedisBarReader

        self.bar_reader = reader = RedisBarReader(url, gateway.live_bars.store, epoch)
        if self.feed is None:
            await reader.load()
        self._bar_tasks.append(self.supervisor.spawn("Redis bar reader", reader.run))

    def _on_epoch(self, epoch: str, listings: Sequence[SymbolInfo]) -> None:
        """A new feed run: the gateway starts over, and its bars come from the new run."""
        assert self.gateway is not None
        self.gateway.on_epoch(epoch, listings)
        if self.bar_reader is not None:
            self.bar_reader.rebind(self.gateway.live_bars.store, epoch)

    async def stop(self) -> None:
        """Close every client with 1001, stop the feed and release the bus (again: a no-op)."""
        server, self._server = self._server, None
        if server is not None:
            await server.close()
        feed_task, self._feed_task = self._feed_task, None
        if feed_task is not None:
            feed_task.cancel()
            await asyncio.gather(feed_task, return_exceptions=True)
        for task in self._bar_tasks:
            task.cancel()
        await asyncio.gather(*self._bar_tasks, return_exceptions=True)
        self._bar_tasks.clear()
        for side in (self.bar_writer, self.bar_reader):
            if side is not None:
                await side.close()
        self.bar_writer = self.bar_reader = None
        if self.gateway is not None:
            await self.gateway.stop()
        bus, self.bus = self.bus, None
        if bus is not None:
            await bus.close()

    async def __aenter__(self) -> TickerServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
