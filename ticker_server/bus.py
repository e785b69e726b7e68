"""The interface between the market feed and the gateways, and its in-process implementation.

The feed side announces the listings once and publishes batches of ticks; the
gateway side reads the listings, recent history (for a gateway that starts
after the feed) and a stream of batches. :class:`LocalBus` connects the two in
one process; :class:`~.redis_bus.RedisBus` connects processes through Redis. Both
deliver batches through a plain callback, so the gateway's fan-out is the same
code whatever the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from .protocol import SymbolInfo, Tick

__all__ = ["Bus", "EpochCallback", "LocalBus", "StatusCallback", "TicksCallback"]

TicksCallback = Callable[[Sequence[Tick]], None]
"""Receives each batch of ticks, in seq order per symbol. Must not block."""
StatusCallback = Callable[[bool, str], None]
"""Receives (feed available?, reason) when the feed becomes unavailable or comes back."""
EpochCallback = Callable[[str, Sequence[SymbolInfo]], None]
"""Receives (new epoch, its listings) when another feed run took over: seqs start again."""


class Bus(Protocol):
    """What the feed publishes to and the gateways read from."""

    @property
    def epoch(self) -> str:
        """Identifies the feed's run; seqs compare only within one epoch."""

    async def open(self) -> None:
        """Connect (or prepare); called once before anything else."""

    async def close(self) -> None:
        """Stop every task the bus owns and release its connections."""

    async def check(self) -> None:
        """Raise if the bus cannot be reached now: a feed does not start without it."""

    # -- the feed side
    async def announce(self, listings: Sequence[SymbolInfo], epoch: str) -> None:
        """Publish the symbol universe (names, starting prices) and the feed's epoch."""

    def publish(self, ticks: Sequence[Tick]) -> None:
        """Hand a batch on without waiting; a bus that cannot keep up drops rather than queue."""

    # -- the gateway side
    async def listings(self) -> list[SymbolInfo]:
        """The announced universe; waits until a feed has announced it."""

    async def history(self, symbol: str, count: int) -> list[Tick]:
        """Up to ``count`` recent ticks of ``symbol``, oldest first."""

    def listen(
        self,
        on_ticks: TicksCallback,
        on_status: StatusCallback,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        """Start delivering batches (and feed status and epoch changes) to the callbacks."""


class LocalBus:
    """The embedded bus: feed and gateway in one process, batches passed by reference."""

    def __init__(self) -> None:
        self.epoch = ""
        self._listings: list[SymbolInfo] | None = None
        self._announced = asyncio.Event()
        self._listeners: list[TicksCallback] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self._listeners.clear()

    async def check(self) -> None:
        return None

    async def announce(self, listings: Sequence[SymbolInfo], epoch: str) -> None:
        self._listings = list(listings)
        self.epoch = epoch
        self._announced.set()

    def publish(self, ticks: Sequence[Tick]) -> None:
        for listener in self._listeners:
            listener(ticks)

    async def listings(self) -> list[SymbolInfo]:
        await self._announced.wait()
        assert self._listings is not None
        return list(self._listings)

    async def history(self, symbol: str, count: int) -> list[Tick]:
        # In one process the gateway sees every tick from the first, so it holds its own history.
        return []

    def listen(
        self,
        on_ticks: TicksCallback,
        on_status: StatusCallback,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        # The feed in this process never restarts on its own, so the epoch never changes.
        self._listeners.append(on_ticks)
