"""The WebSocket side: the feed's ticks fanned out to connections, their requests answered.

The gateway wires four parts: the bus callbacks feed :class:`~.conflation.Fanout`,
whose frames :class:`~.delivery.Delivery` writes without ever awaiting a client;
each connection's requests go through its :class:`~.session.Session`; the periodic
:class:`~.upkeep.Upkeep` pass says whom to ping, unblock or close. A client whose
write buffer is above the high-water mark is not written to (its updates keep
conflating) until it drains, or is closed with 1013 after a grace period. So the
feed never waits for a client and one stalled client never delays another.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from .answer_queue import AnswerQueue
from .bars import BarStore
from .bars_answer import EncodedRuns
from .config import ServerConfig
from .conflation import Fanout
from .connection import Connection
from .delivery import Client, Delivery
from .live_bars import LiveBars
from .protocol import RATES, Error, Heartbeat, Hello, SymbolInfo, Tick, encode, grant_rate
from .session import MAX_DEFERRED, MarketView, Outcome, Session
from .stats import GatewayStats
from .supervision import Supervisor
from .upkeep import CLOSE_SLOW_CONSUMER, Close, SendPing, Unblock, Upkeep, UpkeepRules
from .upkeep import Heartbeat as HeartbeatDue

__all__ = ["MAX_DEFERRED", "Client", "Gateway", "GatewayStats"]

log = logging.getLogger("ticker_server.gateway")

CLOSE_FEED_RESTARTED = 1012
"""Close code (service restart) when the feed restarts with a new epoch."""
UPKEEP_PERIOD = 0.05
"""Seconds between upkeep passes: how late a drained client is unblocked, at most."""


class Gateway:
    """Serves protocol v1 on WebSocket connections, fed by :meth:`on_ticks`.

    Args:
        config: the server's settings.
        listings: the symbol universe (names and starting prices).
        epoch: the feed's epoch, sent in hello.
        clock: wall-clock seconds (tick timestamps), injected for tests.
    """

    def __init__(
        self,
        config: ServerConfig,
        listings: Sequence[SymbolInfo],
        epoch: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.epoch = epoch
        self.clock = clock
        self.clients: set[Client] = set()
        self.blocked: set[Client] = set()
        """Clients above their buffer limit: not written to until upkeep unblocks them."""
        self.changed = asyncio.Event()
        """Set when a client connects, goes, blocks, unblocks or sends a request; whoever
        waits for such a change clears it first (tests await it instead of polling)."""
        self.stats = GatewayStats()
        self.feed_available = True
        self.fanout = Fanout(config.history)
        self.live_bars: LiveBars[Client] = LiveBars(BarStore((), config.bar_retention))
        """Every symbol's bars, fed by :meth:`on_ticks`, and who watches them live."""
        self.market = MarketView(
            {},
            self.fanout.books,
            grant_rate(None, config.max_rate),
            config.max_symbols,
            config.request_rate,
            config.request_burst,
            self.live_bars.store,
        )
        self._reset(listings, self.fanout)
        self.upkeep = Upkeep(
            UpkeepRules(
                config.heartbeat, config.ping_interval, config.ping_timeout, config.slow_grace
            )
        )
        self.delivery = Delivery(self.fanout, self.stats, clock)
        self._write = self.delivery.write
        self.answers = AnswerQueue(self._write, self._resume)
        """Clients with a ``bars`` answer being written, a slice per loop turn."""
        self._join: set[Client] = set()
        """Unthrottled clients that may ride with a group once they are in step."""
        self._upkeep_task: asyncio.Task[None] | None = None

    def _reset(self, listings: Sequence[SymbolInfo], fanout: Fanout) -> None:
        self.listings = {info.symbol: info for info in listings}
        for symbol in self.listings:
            fanout.book(symbol)
        self.fanout = fanout
        self.live_bars = LiveBars(BarStore(self.listings, self.config.bar_retention))
        self.market.listings, self.market.books = self.listings, fanout.books
        self.market.bars = self.live_bars.store
        self.market.runs = EncodedRuns()  # runs of the old store's bars
        cap = self.market.cap
        rates = [rate for rate in RATES if cap <= 0 or rate <= cap * (1 + 1e-9)]
        hello = Hello(
            symbols=list(self.listings),
            max_rate=cap,
            heartbeat=self.config.heartbeat,
            epoch=self.epoch,
            rates=rates,
        )
        self._hello = encode(hello)

    # -- lifecycle -----------------------------------------------------------------

    def start(self, supervisor: Supervisor | None = None) -> None:
        """Start the upkeep pass, restarted by ``supervisor`` if it fails."""
        if supervisor is not None:
            self._upkeep_task = supervisor.spawn("gateway maintenance", self._upkeep)
        else:
            self._upkeep_task = asyncio.get_running_loop().create_task(self._upkeep())

    async def stop(self) -> None:
        """Cancel the gateway's own timers and task (connections are closed by the server)."""
        self.delivery.stop()
        self.answers.stop()
        if self._upkeep_task is not None:
            self._upkeep_task.cancel()
            await asyncio.gather(self._upkeep_task, return_exceptions=True)

    # -- feed input ----------------------------------------------------------------

    def on_ticks(self, ticks: Sequence[Tick]) -> None:
        """Bus callback: take a batch, and flush soon to whoever has something ready."""
        # The bars take every tick; their live frames go out with the batch that made them.
        for client, frame in self.live_bars.on_ticks(ticks, self.clock()):
            self._write(client, frame)
        self.delivery.ingest(ticks)

    def on_status(self, available: bool, reason: str) -> None:
        """Bus callback: tell every client when the feed goes away, and log when it is back."""
        if available == self.feed_available:
            return
        self.feed_available = available
        if available:
            log.info("feed available again")
            return
        log.warning("feed unavailable: %s", reason)
        data = encode(Error(code="feed_unavailable", message=f"market feed unavailable: {reason}"))
        for client in list(self.clients):
            self._write(client, data)

    def on_epoch(self, epoch: str, listings: Sequence[SymbolInfo]) -> None:
        """Bus callback: the feed restarted, so its seqs begin again below what the books hold.

        Every client is closed with 1012 (it reconnects and gets a hello with
        the new epoch), and the books start empty for the new run's ticks.
        """
        log.warning(
            "feed restarted (epoch %s -> %s): closing %d clients with 1012",
            self.epoch,
            epoch,
            len(self.clients),
        )
        for client in list(self.clients):
            self._close(client, CLOSE_FEED_RESTARTED, "feed restarted")
        self.epoch = epoch
        fanout = Fanout(self.config.history)
        fanout.delivered, fanout.conflated = self.fanout.delivered, self.fanout.conflated
        self._reset(listings, fanout)
        self.delivery.reset(fanout)
        self._join.clear()

    # -- connections (the connection's Listener) --------------------------------------

    def on_open(self, conn: Connection) -> None:
        """A handshake succeeded: greet the client and listen to it."""
        now, at = self.clock(), asyncio.get_running_loop().time()
        peer = conn.remote_address
        name = f"{peer[0]}:{peer[1]}" if peer else "?"
        client = Client(
            name=name,
            connection=conn,
            session=Session(self.market, now, name),
            connected_at=now,
            last_ping=at,
            paused=conn.paused,
        )
        if self.config.sndbuf and conn.transport is not None:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.sndbuf)
        self.clients.add(client)
        self.changed.set()
        self.stats.connections += 1
        log.info("connect %s", name)
        conn.open(self, client)
        self._write(client, self._hello, at)

    def on_lost(self, client: Client) -> None:
        conn = client.connection
        self.fanout.remove(client)
        self.live_bars.remove(client)
        self.clients.discard(client)
        self.blocked.discard(client)
        self.changed.set()
        self.delivery.pending.discard(client)
        self._join.discard(client)
        log.info(
            "disconnect %s after %.1f s, code %s, %d ticks delivered",
            client.name,
            self.clock() - client.connected_at,
            None if conn is None else conn.close_code,
            client.delivered,
        )
        # The wheel may still hold the client until its window's end (at most a minute,
        # the slowest rate's): what it holds must not keep the connection's buffers alive.
        client.connection = client.session = None

    def on_pause(self, client: Client) -> None:
        """The client's write buffer went above max_buffer during a write: stop writing to it."""
        client.paused = True
        if client.blocked or client.closing:
            return
        client.blocked = True
        client.blocked_since = asyncio.get_running_loop().time()
        self.blocked.add(client)
        self.changed.set()
        self.fanout.leave(client)  # it conflates on its own from the group's position

    def on_resume(self, client: Client) -> None:
        """Below half of max_buffer again; the next upkeep pass unblocks the client."""
        client.paused = False

    def on_message(self, client: Client, message: str | bytes) -> None:
        session = client.session
        if session is None or client.closing:
            return
        self._apply(client, session.receive(message, self.clock(), client.symbols, client.blocked))
        self.changed.set()

    def _apply(self, client: Client, outcome: Outcome) -> None:
        """Carry out what the session decided, in its order: subscriptions, frames, close."""
        fanout = self.fanout
        for symbol in outcome.subscribe:
            fanout.subscribe(client, symbol, outcome.rate)
        if outcome.bars is not None:
            self.live_bars.subscribe(client, outcome.subscribe, outcome.bars, outcome.rate)
        for symbol in outcome.unsubscribe:
            fanout.unsubscribe(client, symbol)
        if outcome.unsubscribe:
            self.live_bars.unsubscribe(client, outcome.unsubscribe)
        for code in outcome.errors:
            self.stats.count_error(code)
        at = asyncio.get_running_loop().time()
        for frame in outcome.frames:
            self._write(client, frame, at)
        if outcome.answer is not None:
            self.answers.add(client)
        if outcome.close is not None:
            self._close(client, *outcome.close)
        elif client.group is None and client.symbols:
            self._join.add(client)
            if client.ready:  # e.g. it left a group with updates pending
                self.delivery.mark(client)

    # -- upkeep ------------------------------------------------------------------------

    async def _upkeep(self) -> None:
        """Apply upkeep's decisions every UPKEEP_PERIOD, and let unthrottled clients regroup."""
        loop = asyncio.get_running_loop()
        heartbeat: bytes | None = None
        while True:
            await asyncio.sleep(UPKEEP_PERIOD)
            at = loop.time()
            heartbeat = None
            for decision in self.upkeep.plan(self.clients, list(self.blocked), at):
                client: Any = decision.client
                if isinstance(decision, Unblock):
                    self._unblock(client)
                elif isinstance(decision, HeartbeatDue):
                    heartbeat = heartbeat or encode(Heartbeat(ts=self.clock()))
                    self._write(client, heartbeat, at)
                elif isinstance(decision, SendPing):
                    self._ping(client, at)
                elif isinstance(decision, Close):
                    if decision.code != CLOSE_SLOW_CONSUMER:
                        log.info("closing %s: %s", client.name, decision.reason)
                    self._close(client, decision.code, decision.reason)
            for client in list(self._join):
                if client.closed or client.group is not None or not client.symbols:
                    self._join.discard(client)
                elif self.fanout.join(client):
                    self._join.discard(client)

    def _unblock(self, client: Client) -> None:
        client.blocked = False
        client.catch_up = True  # what piled up may go out merged, so it is fresh
        client.ping_sent = 0.0  # its pong may still be behind what it just read
        self.blocked.discard(client)
        self.changed.set()
        self._join.add(client)
        self.delivery.mark(client)
        session = client.session
        if session is not None and session.answering is not None:
            self.answers.add(client)
        self._resume(client)

    def _resume(self, client: Client) -> None:
        """Answer the requests ``client`` sent while it was blocked or being answered."""
        session = client.session
        while session is not None and not client.blocked and not client.closing:
            outcome = session.resume(self.clock(), client.symbols)
            if outcome is None:
                break
            self._apply(client, outcome)

    def _ping(self, client: Client, at: float) -> None:
        client.ping_sent = client.last_ping = at
        conn = client.connection
        if conn is not None and conn.is_open:
            try:
                conn.send_ping()
            except Exception as exc:  # a transport torn down under us
                log.debug("ping to %s failed: %r", client.name, exc)

    def _close(self, client: Client, code: int, reason: str) -> None:
        conn = client.connection
        if conn is None or client.closing:
            return
        client.closing = True
        self.blocked.discard(client)
        self.changed.set()
        if code == CLOSE_SLOW_CONSUMER:
            self.stats.slow_closes += 1
            log.warning(
                "closing slow consumer %s after %.0f s above the buffer limit",
                client.name,
                asyncio.get_running_loop().time() - client.blocked_since,
            )
        self.fanout.remove(client)
        try:
            conn.close(code, reason)
        except Exception as exc:
            log.debug("close of %s failed: %r", client.name, exc)
