"""The WebSocket side: connections, requests, and the non-blocking fan-out.

Every write to a client is synchronous: the frame goes into its transport
without awaiting, and a client whose write buffer is above the high-water mark
is simply not written to (its updates keep conflating in :mod:`.conflation`)
until it drains, or is closed with 1013 after a grace period. So the feed never
waits for a client and one stalled client never delays another.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from .bars import BarStore
from .bars_answer import answer_bars
from .config import ServerConfig
from .conflation import Fanout, Subscriber, SubscriberGroup
from .connection import GatewayConnection
from .limits import TokenBucket
from .live_bars import LiveBars
from .protocol import (
    MAX_FRAME,
    RATES,
    BarsRequest,
    Error,
    Heartbeat,
    Hello,
    ListSymbols,
    Ping,
    Pong,
    ProtocolError,
    Snapshot,
    Subscribe,
    Subscribed,
    SymbolInfo,
    Symbols,
    Tick,
    Unsubscribe,
    Unsubscribed,
    decode_request,
    encode,
    grant_rate,
)
from .supervision import Supervisor

__all__ = ["Client", "Gateway", "GatewayStats"]

log = logging.getLogger("ticker_server.gateway")

CLOSE_SLOW_CONSUMER = 1013
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
"""Close code when a keepalive ping goes unanswered (as websockets' own keepalive)."""
CLOSE_FEED_RESTARTED = 1012
"""Close code (service restart) when the feed restarts with a new epoch."""
ABUSE_LIMIT = 100
"""Refused requests in a row after which a client is closed with 1008."""
MAX_DEFERRED = 8
"""Requests held, unanswered, for a client above the buffer limit (it is not reading its
replies); one more closes it with 1008. So what a client has queued stays within
max_buffer + one reply + MAX_DEFERRED requests, whatever it sends."""
MAINTENANCE_PERIOD = 0.05
PACE_RATIO = 0.25
"""Pause after a flush, as a share of the flush's CPU time: flushing may take 80 % of the
loop. At half (a ratio of 1) a server that needs more than half a core to deliver the
feed falls into ever longer pauses and bigger frames (scenario 1b: 16 flushes a second)."""
PACE_MIN = 0.001
"""Shortest pause between flushes; the event loop's selector cannot sleep less than 1 ms."""
CLOSE_TIMEOUT = 5.0
"""Seconds a client closed by the server has to read what is queued and answer the close."""


def _wire(payload: bytes) -> bytes:
    """A server-to-client text frame as it goes on the wire (servers never mask)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


def _snapshot_frames(symbol: str, parts: list[bytes]) -> list[bytes]:
    """A symbol's snapshot as one or more frames, each within MAX_FRAME, oldest ticks first.

    A long history does not fit one 64 KiB frame, which clients are allowed to refuse
    (1009); consecutive snapshot messages of one symbol simply continue each other.
    """
    head = b'{"type":"snapshot","symbol":"' + symbol.encode() + b'","ticks":['
    frames: list[bytes] = []
    chunk: list[bytes] = []
    size = len(head) + 2
    for part in parts:
        if chunk and size + len(part) + 1 > MAX_FRAME:
            frames.append(head + b",".join(chunk) + b"]}")
            chunk, size = [], len(head) + 2
        chunk.append(part)
        size += len(part) + 1
    frames.append(head + b",".join(chunk) + b"]}")
    return frames


@dataclass(eq=False, slots=True)
class Client(Subscriber):
    """A connected client: its subscriptions plus what the I/O layer tracks."""

    connection: GatewayConnection | None = None
    connected_at: float = 0.0
    ping_sent: float = 0.0
    """Loop time of the unanswered keepalive ping, or 0."""
    last_ping: float = 0.0
    last_write: float = 0.0
    blocked_since: float = 0.0
    delivered: int = 0
    bucket: TokenBucket | None = None
    closing: bool = False
    raw: bool = True
    """Frames go to the transport as serialized; False when an extension (compression) must
    transform each one."""
    deferred: list[str | bytes] | None = None
    """Requests that came while the client was blocked, answered once it drains."""


LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class GatewayStats:
    """Counters the metrics endpoint and benchmarks read."""

    connections: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    slow_closes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    """Send latency (tick ts to its flush) per bucket of LATENCY_BUCKETS, the last one +Inf."""
    latency_sum: float = 0.0

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds


class Gateway:
    """Serves protocol v1 on WebSocket connections, fed by :meth:`on_ticks`.

    Args:
        config: the server's settings.
        listings: the symbol universe (names and starting prices).
        epoch: the feed's epoch, sent in hello.
        clock: wall-clock seconds, injected for tests.
    """

    def __init__(
        self,
        config: ServerConfig,
        listings: Sequence[SymbolInfo],
        epoch: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.listings = {info.symbol: info for info in listings}
        self.epoch = epoch
        self.clock = clock
        self.fanout = Fanout(config.history)
        for symbol in self.listings:
            self.fanout.book(symbol)
        self.clients: set[Client] = set()
        self.stats = GatewayStats()
        self.feed_available = True
        self._cap = grant_rate(None, config.max_rate)
        """The cap on updates per second per symbol, a supported rate (0: no cap)."""
        self._pending: set[Subscriber] = set()
        self._join: set[Client] = set()
        """Unthrottled clients that may ride with a group once they are in step."""
        self._oldest_pending_ts: float | None = None
        self._blocked: set[Client] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._next_flush_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        self._handle = self.handle
        self._pause = self._on_pause
        """Bound methods shared by every connection's callbacks."""
        self._hello = self._make_hello()
        self.live_bars: LiveBars[Client] = LiveBars(BarStore(self.listings, config.bar_retention))
        """Every symbol's bars, fed by :meth:`on_ticks`, and who watches them live."""

    def _make_hello(self) -> bytes:
        cap = self._cap
        return encode(
            Hello(
                symbols=list(self.listings),
                max_rate=cap,
                heartbeat=self.config.heartbeat,
                epoch=self.epoch,
                rates=[rate for rate in RATES if cap <= 0 or rate <= cap * (1 + 1e-9)],
            )
        )

    # -- lifecycle -----------------------------------------------------------------

    def start(self, supervisor: Supervisor | None = None) -> None:
        """Start the maintenance pass, restarted by ``supervisor`` if it fails."""
        if supervisor is not None:
            self._maintenance = supervisor.spawn("gateway maintenance", self._maintain)
        else:
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain())

    async def stop(self) -> None:
        """Cancel the gateway's own tasks (connections are closed by the server)."""
        for handle in (self._flush_handle, self._timer):
            if handle is not None:
                handle.cancel()
        tasks = [t for t in (self._maintenance, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- feed input ----------------------------------------------------------------

    def on_ticks(self, ticks: Sequence[Tick]) -> None:
        """Bus callback: take a batch, and flush soon to whoever has something ready."""
        for client, frame in self.live_bars.on_ticks(ticks, now := self.clock()):
            self._write(client, frame, now)
        dirty = self.fanout.ingest(ticks)
        if dirty:
            if self._oldest_pending_ts is None:
                self._oldest_pending_ts = ticks[0].ts
            self._pending.update(dirty)
            self._schedule_flush()

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
        now = self.clock()
        for client in list(self.clients):
            self._write(client, data, now)

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
        self.listings = {info.symbol: info for info in listings}
        fanout = Fanout(self.config.history)
        fanout.delivered, fanout.conflated = self.fanout.delivered, self.fanout.conflated
        for symbol in self.listings:
            fanout.book(symbol)
        self.fanout = fanout
        self.live_bars = LiveBars(BarStore(self.listings, self.config.bar_retention))
        self._pending.clear()
        self._join.clear()
        self._oldest_pending_ts = None
        self._hello = self._make_hello()

    # -- the fan-out -----------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            delay = self._next_flush_at - loop.time()
            # The selector sleeps in whole milliseconds, so a shorter pause would cost a full
            # one: pace only after flushes that took that long (under load), else flush now.
            if delay >= PACE_MIN:
                self._flush_handle = loop.call_later(delay, self._flush)
            else:
                self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        started = time.process_time()
        now = self.clock()
        if self._oldest_pending_ts is not None:
            # Once per flush, not per client: how long the oldest tick in it waited for its write.
            self.stats.observe_latency(max(now - self._oldest_pending_ts, 0.0))
            self._oldest_pending_ts = None
        pending, self._pending = self._pending, set()
        take_frames = self.fanout.take_frames
        for sub in pending:
            if sub.blocked or sub.closed:
                continue
            for frame in take_frames(sub, now):
                count = frame.count(b'"seq"')
                if isinstance(sub, SubscriberGroup):
                    self._broadcast(sub, frame, count, now)
                else:
                    client = cast(Client, sub)
                    client.delivered += count
                    self._write(client, frame, now)
        self._arm_timer(now)
        # Pace flushes: at low load every tick leaves at once; under load the loop pauses
        # PACE_RATIO of the last flush's time before the next, so frames grow instead of
        # multiplying, and reads, pings and the feed keep their share of the CPU.
        # CPU time, not wall time: a flush preempted by another process must not count twice.
        took = time.process_time() - started
        self._next_flush_at = asyncio.get_running_loop().time() + took * PACE_RATIO

    def _arm_timer(self, now: float) -> None:
        due = self.fanout.wheel.next_time()
        if due is None or (self._timer is not None and self._timer_due <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = asyncio.get_running_loop().call_later(max(due - now, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        dirty = self.fanout.advance(self.clock())
        if dirty:
            self._pending.update(dirty)
        if self._pending:
            self._flush()
        else:
            self._arm_timer(self.clock())

    def _write(self, client: Client, data: bytes, now: float) -> None:
        """Queue one text frame on the client's transport without waiting (a group's frame goes
        through :meth:`_broadcast`, which serializes it once for all members)."""
        conn = client.connection
        if conn is None or client.closing or conn.protocol.state is not State.OPEN:
            return
        try:
            if client.raw:
                conn.transport.write(_wire(data))
            else:
                conn.protocol.send_text(data)
                conn.send_data()
        except Exception as exc:  # a transport torn down under us; the handler cleans up
            log.debug("write to %s failed: %r", client.name, exc)
            return
        client.last_write = now
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(data)

    def _broadcast(self, group: SubscriberGroup, frame: bytes, count: int, now: float) -> None:
        """Write one frame to every member of a group: the fan-out's hottest loop.

        The frame is serialized once and the bookkeeping of :meth:`_write` is done
        once for all; members with an extension take the per-connection path.
        """
        wire = _wire(frame)
        sent = 0
        open_ = State.OPEN
        # A copy: a write that fills a member's buffer makes it leave the group.
        for member in list(group.members):
            client = cast(Client, member)
            client.delivered += count
            conn = client.connection
            if not client.raw:
                self._write(client, frame, now)
                continue
            if conn is None or client.closing or conn.protocol.state is not open_:
                continue
            try:
                conn.transport.write(wire)
            except Exception as exc:  # a transport torn down under us; the handler cleans up
                log.debug("write to %s failed: %r", client.name, exc)
                continue
            client.last_write = now
            sent += 1
        self.stats.frames_sent += sent
        self.stats.bytes_sent += sent * len(frame)

    def _on_pause(self, client: Client) -> None:
        """Transport callback: the client's write buffer went above max_buffer during a write."""
        if client.blocked or client.closing:
            return
        client.blocked = True
        client.blocked_since = self.clock()
        self._blocked.add(client)
        self.fanout.leave(client)  # it conflates on its own from the group's position

    def _send(
        self, client: Client, message: Subscribed | Unsubscribed | Snapshot | Symbols | Pong | Error
    ) -> None:
        if isinstance(message, Error):
            self.stats.errors[message.code] = self.stats.errors.get(message.code, 0) + 1
        self._write(client, encode(message), self.clock())

    async def _maintain(self) -> None:
        """Unblock drained clients, close ones stuck too long, and send heartbeats."""
        next_heartbeat = next_keepalive = 0.0
        loop = asyncio.get_running_loop()
        interval, timeout = self.config.ping_interval, self.config.ping_timeout
        keepalive_period = min(1.0, interval / 4, timeout / 4)
        while True:
            await asyncio.sleep(MAINTENANCE_PERIOD)
            now = self.clock()
            for client in list(self._blocked):
                conn = client.connection
                if client.closed or conn is None:
                    self._blocked.discard(client)
                elif not conn.paused:  # its transport resumed: below half of max_buffer
                    client.blocked = False
                    client.catch_up = True  # what piled up may go out merged, so it is fresh
                    client.ping_sent = 0.0  # its pong may still be behind what it just read
                    self._blocked.discard(client)
                    self._pending.add(client)
                    self._join.add(client)
                    self._schedule_flush()
                    if client.deferred:
                        self._answer_deferred(client)
                elif now - client.blocked_since > self.config.slow_grace:
                    self._blocked.discard(client)
                    self._close(client, CLOSE_SLOW_CONSUMER, "slow consumer")
            if self._join:
                self._regroup()
            if now >= next_heartbeat:
                next_heartbeat = now + min(1.0, self.config.heartbeat / 2)
                self._heartbeats(now)
            if interval > 0 and loop.time() >= next_keepalive:
                next_keepalive = loop.time() + keepalive_period
                self._keepalive(loop.time())

    def _regroup(self) -> None:
        for client in list(self._join):
            if client.closed or client.group is not None or not client.symbols:
                self._join.discard(client)
            elif self.fanout.join(client):
                self._join.discard(client)

    def _heartbeats(self, now: float) -> None:
        quiet = now - self.config.heartbeat
        data: bytes | None = None
        for client in self.clients:
            if client.last_write <= quiet and not client.blocked:
                data = data or encode(Heartbeat(ts=now))
                self._write(client, data, now)

    def _keepalive(self, now: float) -> None:
        """Ping each client every ping_interval; fail one whose pong is ping_timeout late.

        One pass over all clients instead of a task per connection. A blocked
        client is left to the slow-consumer rule: its ping would queue behind
        the backlog it is not reading.
        """
        interval, timeout = self.config.ping_interval, self.config.ping_timeout
        for client in self.clients:
            conn = client.connection
            if conn is None or client.blocked or client.closing:
                continue
            if client.ping_sent:
                if conn.pong_at >= client.ping_sent:
                    client.ping_sent = 0.0
                elif now - client.ping_sent > timeout:
                    log.info("closing %s: keepalive ping timeout", client.name)
                    self._close(client, CLOSE_INTERNAL_ERROR, "keepalive ping timeout")
                    continue
            if not client.ping_sent and now - client.last_ping >= interval:
                client.ping_sent = client.last_ping = now
                try:
                    conn.protocol.send_ping(b"")
                    conn.send_data()
                except Exception as exc:  # a transport torn down under us
                    log.debug("ping to %s failed: %r", client.name, exc)

    def _close(self, client: Client, code: int, reason: str) -> None:
        conn = client.connection
        if conn is None or client.closing:
            return
        client.closing = True
        if code == CLOSE_SLOW_CONSUMER:
            self.stats.slow_closes += 1
            log.warning(
                "closing slow consumer %s after %.0f s above the buffer limit",
                client.name,
                self.clock() - client.blocked_since,
            )
        self.fanout.remove(client)
        # Not conn.close(): it awaits a drain that a stalled client never gives. The close
        # frame queues behind what the client has not read yet, so one that resumes reading
        # within CLOSE_TIMEOUT still learns why; one that does not is cut off then.
        if conn.protocol.state is State.OPEN:
            try:
                conn.protocol.send_close(code, reason)
                conn.send_data()
            except Exception as exc:
                log.debug("close of %s failed: %r", client.name, exc)
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, conn.transport.abort)

    # -- connections and requests ----------------------------------------------------

    async def handler(self, connection: ServerConnection) -> None:
        """Serve one connection until it closes; its messages arrive by callback."""
        conn = cast(GatewayConnection, connection)  # serve(create_connection=GatewayConnection)
        conn.forget_handshake()
        now = self.clock()
        peer = conn.remote_address
        client = Client(
            name=f"{peer[0]}:{peer[1]}" if peer else "?",
            connection=conn,
            connected_at=now,
            raw=not conn.protocol.extensions,
            last_ping=conn.loop.time(),
            bucket=TokenBucket(self.config.request_rate, self.config.request_burst, now),
        )
        if self.config.sndbuf:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.sndbuf)
        self.clients.add(client)
        self.stats.connections += 1
        log.info("connect %s", client.name)
        self._write(client, self._hello, now)
        try:
            conn.listen(self._handle, self._pause, client)
            await conn.lost
        finally:
            self.fanout.remove(client)
            self.live_bars.remove(client)
            self.clients.discard(client)
            self._blocked.discard(client)
            self._pending.discard(client)
            self._join.discard(client)
            log.info(
                "disconnect %s after %.1f s, code %s, %d ticks delivered",
                client.name,
                self.clock() - client.connected_at,
                conn.close_code,
                client.delivered,
            )
            # The wheel may still hold the client until its window's end (at most a minute,
            # the slowest rate's): what it holds must not keep the connection's buffers alive.
            client.connection = None
            client.deferred = None

    def handle(self, client: Client, message: str | bytes) -> None:
        """Act on one request; every failure becomes an error message, never an exception.

        A client above the buffer limit is not reading its replies: its requests wait
        (at most MAX_DEFERRED) until it drains, so its replies cannot pile up.
        """
        now = self.clock()
        assert client.bucket is not None
        if not client.bucket.take(now):
            if client.bucket.refused_in_a_row >= ABUSE_LIMIT:
                log.warning("closing %s: request rate abuse", client.name)
                self._close(client, CLOSE_POLICY, "request rate limit exceeded")
            elif client.bucket.refused_in_a_row == 1 or client.bucket.refused_in_a_row % 10 == 0:
                log.warning("rate limiting %s", client.name)
            self._send(client, Error(code="rate_limited", message="too many requests; slow down"))
            return
        if client.blocked or client.deferred:
            deferred = client.deferred = client.deferred or []
            if len(deferred) >= MAX_DEFERRED:
                log.warning("closing %s: %d requests while not reading", client.name, MAX_DEFERRED)
                self._close(client, CLOSE_POLICY, "requests sent while not reading replies")
                return
            deferred.append(message)
            return
        self._serve(client, message)

    def _answer_deferred(self, client: Client) -> None:
        """Answer the requests held while the client was blocked, until it blocks again."""
        deferred = client.deferred
        while deferred and not client.blocked and not client.closing:
            self._serve(client, deferred.pop(0))
        if not deferred:
            client.deferred = None

    def _serve(self, client: Client, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._send(
                client,
                Error(
                    code="bad_request", message="binary frames are not supported; send JSON text"
                ),
            )
            return
        try:
            request = decode_request(message)
            if isinstance(request, Subscribe):
                self._subscribe(client, request)
            elif isinstance(request, Unsubscribe):
                self._unsubscribe(client, request)
            elif isinstance(request, ListSymbols):
                self._send(client, Symbols(symbols=self._symbol_infos(), id=request.id))
            elif isinstance(request, Ping):
                self._send(client, Pong(ts=self.clock(), id=request.id))
            elif isinstance(request, BarsRequest):
                for frame in answer_bars(self.live_bars.store, request):
                    self._write(client, frame, self.clock())
        except ProtocolError as exc:
            self._send(client, exc.to_message())
        except Exception:
            log.exception("internal error handling a request from %s", client.name)
            self._send(client, Error(code="internal_error", message="internal server error"))
        if client.group is None and client.symbols:
            self._join.add(client)
            if client.ready:  # e.g. it left a group with updates pending
                self._pending.add(client)
                self._schedule_flush()

    def _symbol_infos(self) -> list[SymbolInfo]:
        infos = []
        for symbol, info in self.listings.items():
            latest = self.fanout.books[symbol].latest
            infos.append(
                info if latest is None else info.model_copy(update={"price": latest.price})
            )
        return infos

    def _split(self, symbols: list[str]) -> tuple[list[str], list[str]]:
        """Known symbols (normalized) and unknown ones (as sent), each once, in request order.

        Dicts, not lists, so a request of thousands of symbols costs linear time.
        """
        known: dict[str, None] = {}
        unknown: dict[str, None] = {}
        for raw in symbols:
            symbol = raw.strip().upper()
            if symbol in self.listings:
                known[symbol] = None
            else:
                unknown[raw] = None
        return list(known), list(unknown)

    def _unknown(self, client: Client, unknown: list[str], rid: str | int | None) -> None:
        shown = ", ".join(repr(s[:20]) for s in unknown[:10]) + (
            " ..." if len(unknown) > 10 else ""
        )
        self._send(
            client,
            Error(
                code="unknown_symbol",
                message=f"symbols: unknown symbol(s) {shown}",
                id=rid,
                symbols=[s[:20] for s in unknown[:100]],
            ),
        )

    def _subscribe(self, client: Client, request: Subscribe) -> None:
        known, unknown = self._split(request.symbols)
        added = [s for s in known if s not in client.symbols]
        if len(client.symbols) + len(added) > self.config.max_symbols:
            raise ProtocolError(
                "too_many_symbols",
                f"symbols: a connection may hold at most {self.config.max_symbols} symbols "
                f"({len(client.symbols)} held, {len(added)} more asked); nothing was changed",
                request.id,
            )
        if unknown:
            self._unknown(client, unknown, request.id)
        rate = grant_rate(request.max_rate, self._cap)
        since = request.since or {}
        snapshots: list[tuple[str, list[bytes]]] = []
        for symbol in known:
            if symbol not in added:
                self.fanout.subscribe(client, symbol, rate)
                continue
            book = self.fanout.books[symbol]
            held = since.get(symbol)
            gap = book.since(held) if held is not None else None
            if gap is not None:
                snapshots.append((symbol, gap))
            elif request.snapshot > 0:
                snapshots.append((symbol, book.snapshot(request.snapshot)))
            self.fanout.subscribe(client, symbol, rate)
        self._send(client, Subscribed(symbols=list(client.symbols), id=request.id, max_rate=rate))
        if request.bars is not None:
            self.live_bars.subscribe(client, known, request.bars, rate)
        now = self.clock()
        for symbol, parts in snapshots:
            for chunk in _snapshot_frames(symbol, parts):
                self._write(client, chunk, now)

    def _unsubscribe(self, client: Client, request: Unsubscribe) -> None:
        known, unknown = self._split(request.symbols)
        if unknown:
            self._unknown(client, unknown, request.id)
        for symbol in known:
            self.fanout.unsubscribe(client, symbol)
        self.live_bars.unsubscribe(client, known)
        self._send(client, Unsubscribed(symbols=list(client.symbols), id=request.id))
