"""The market feed: drives the pure :class:`~.market.Market` in real time and publishes to a bus."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from .bus import Bus
from .market import Market
from .protocol import SymbolInfo, Tick

__all__ = ["Feed"]

log = logging.getLogger("ticker_server.feed")


class Feed:
    """Wakes at each tick's arrival time, generates what is due, and publishes it.

    Args:
        market: the simulation.
        bus: where the batches go; publishing never waits.
        epoch: this run's identity, announced with the listings.
        clock: wall-clock seconds (the market's time base), injected for tests.
    """

    def __init__(
        self, market: Market, bus: Bus, epoch: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.market = market
        self.bus = bus
        self.epoch = epoch
        self.clock = clock
        self.generated = 0
        self.taps: list[Callable[[Sequence[Tick]], None]] = []
        """Also given every batch, before the bus (e.g. the Redis bar writer's store)."""

    def infos(self) -> list[SymbolInfo]:
        return [
            SymbolInfo(
                symbol=item.symbol, name=item.name, price=self.market.last_price(item.symbol)
            )
            for item in self.market.listings
        ]

    async def announce(self) -> None:
        """Publish the listings and epoch; gateways wait for this."""
        await self.bus.announce(self.infos(), self.epoch)

    async def run(self) -> None:
        """Run until cancelled (call :meth:`announce` first)."""
        log.info("feed running: %d symbols, epoch %s", len(self.market.listings), self.epoch)
        while True:
            delay = self.market.next_arrival() - self.clock()
            # Sleeping 0 still yields, so a feed that falls behind never starves the gateways.
            await asyncio.sleep(max(delay, 0.0))
            ticks = self.market.advance(self.clock())
            if ticks:
                self.generated += len(ticks)
                for tap in self.taps:
                    tap(ticks)
                self.bus.publish(ticks)
