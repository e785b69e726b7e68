"""Wiring: a bus, the feed and/or a gateway, and the WebSocket server around them."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from types import TracebackType

import numpy as np
from websockets.asyncio.server import Server, serve

from .bus import Bus, LocalBus
from .config import ServerConfig
from .connection import GatewayConnection
from .feed import Feed
from .gateway import Gateway
from .market import Market, listings_for
from .protocol import MAX_FRAME
from .service import ServiceEndpoints

__all__ = ["ServerConfig", "TickerServer", "make_bus"]

log = logging.getLogger("ticker_server")


def make_bus(config: ServerConfig) -> Bus:
    """The in-process bus, or Redis when a broker URL is given."""
    if config.broker is None:
        return LocalBus()
    from .redis_bus import RedisBus

    return RedisBus(config.broker, history=config.history)


class TickerServer:
    """One ticker process: the feed, a gateway, or both (the default), on one bus.

    Use as ``async with TickerServer(config) as server:`` or call :meth:`start`
    and :meth:`stop`. After start, :attr:`url` and :attr:`port` tell where it
    listens (a feed-only process does not listen).
    """

    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.bus: Bus | None = None
        self.feed: Feed | None = None
        self.gateway: Gateway | None = None
        self.port = 0
        self.started_at = 0.0
        self._server: Server | None = None
        self._feed_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"{self.config.scheme}://{self.config.host}:{self.port}"

    async def start(self) -> None:
        config = self.config
        self.started_at = self.clock()
        self.bus = bus = make_bus(config)
        await bus.open()
        if config.role in ("all", "feed"):
            start = self.clock()
            market = Market(
                listings_for(config.symbols, config.seed),
                tick_rate=config.tick_rate,
                start=start,
                rng=np.random.default_rng(config.seed),
            )
            epoch = f"{int(start):x}-{secrets.token_hex(3)}"
            self.feed = Feed(market, bus, epoch, self.clock)
            await self.feed.announce()
        if config.role in ("all", "gateway"):
            if config.role == "gateway":
                log.info("waiting for a feed to announce its symbols on %s", config.broker)
            listings = await bus.listings()
            gateway = Gateway(config, listings, bus.epoch, self.clock)
            for symbol in gateway.listings:
                gateway.on_ticks(await bus.history(symbol, config.history))
            bus.listen(gateway.on_ticks, gateway.on_status, gateway.on_epoch)
            gateway.start()
            self.gateway = gateway
            endpoints = ServiceEndpoints(self)
            self._server = await serve(
                gateway.handler,
                config.host,
                config.port,
                max_size=MAX_FRAME,
                compression="deflate" if config.compression else None,
                create_connection=GatewayConnection,
                # Above max_buffer the transport pauses and the gateway blocks the client; below
                # half of it, it resumes and the gateway's maintenance pass unblocks it.
                write_limit=(config.max_buffer, config.max_buffer // 2),
                ping_interval=None,  # the gateway pings: one pass, not a task per connection
                ping_timeout=None,
                open_timeout=config.open_timeout,
                close_timeout=5,
                process_request=endpoints.process_request,
                origins=endpoints.origins,
                ssl=endpoints.ssl_context(),
                server_header=None,
            )
            self.port = self._server.sockets[0].getsockname()[1]
            log.info("serving %s", self.url)
        if self.feed is not None:
            self._feed_task = asyncio.get_running_loop().create_task(self.feed.run())

    async def stop(self) -> None:
        """Close every client with 1001, stop the feed and release the bus."""
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
        if self._feed_task is not None:
            self._feed_task.cancel()
            await asyncio.gather(self._feed_task, return_exceptions=True)
        if self.gateway is not None:
            await self.gateway.stop()
        if self.bus is not None:
            await self.bus.close()

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
