"""One ticker-bench worker process: many protocol v1 clients on one asyncio loop.

Each client connects, reads hello and subscribes with websockets' asyncio client. From
then on its frames are counted on a fast path: :class:`BenchConnection` splits the byte
stream into frames itself and hands every control or fragmented frame back to websockets,
so a ticks frame costs a header decode and a ``bytes.count`` instead of a trip through the
library's generator parser, the message queue and a coroutine wake-up (about 5x cheaper,
which keeps the tool off the critical path). ``--plain`` uses websockets' ``recv()`` instead.

Every tick is counted; only some are parsed. Verified clients json-parse every frame and
check seq against merged; the others extract ``ts`` with a regex from a sampled share of
frames, sized so each worker parses about ``latency_rate`` ticks a second.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import re
import resource
import socket
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

__all__ = ["BenchConnection", "ClientSpec", "LoadOptions", "Worker", "run_worker"]

TICKS_PREFIX = b'{"type":"ticks"'
TS_RE = re.compile(rb'"ts":(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)')
MERGED_RE = re.compile(rb'"merged":([0-9]+)')
FIN_TEXT = 0x81
MAX_EXAMPLES = 5

PARSE_DELAY = 0.001
"""Seconds between stamping a read and parsing it, so parsing waits for a burst of reads to end."""

T_START, T_END, T_ABORT = 0, 1, 2
"""Slots of the shared control array: window start and end (Unix time, 0 = not yet) and abort."""


@dataclass(frozen=True)
class LoadOptions:
    """What every client of a run does (picklable: it goes to the workers)."""

    url: str
    symbols: tuple[str, ...] | None = None
    """Symbols to subscribe to; None: from the hello message."""
    per_client: int = 0
    """Symbols per client (0: all)."""
    spread: bool = False
    """Rotate each client's symbols through the list instead of taking the first ones."""
    max_rate: float | None = None
    slow_rcvbuf: int = 4096
    slow_after: float = 0.0
    """Seconds after its subscription a slow client stops reading."""
    slow_for: float = 0.0
    """Seconds a slow client then stays stopped before reading again (0: until the window ends)."""
    connect_concurrency: int = 100
    open_timeout: float = 30.0
    latency_rate: float = 50_000.0
    """Ticks per second per worker whose latency is sampled (frames are sampled to match)."""
    freshness_period: float = 0.1
    freshness_clients: int = 64
    drain: float = 5.0
    """Seconds slow clients read after the window, to see how the server closed them."""
    plain: bool = False
    track_times: bool = False
    """Keep each verified update's receive time, for the per-second rate check."""


@dataclass(frozen=True)
class ClientSpec:
    index: int
    slow: bool = False
    verified: bool = False


@dataclass(eq=False)
class _Sampler:
    """Worker-wide sampling state shared by its connections."""

    measuring: bool = False
    stride: int = 1
    left: int = 1
    latency: array[float] = field(default_factory=lambda: array("d"))
    freshness: array[float] = field(default_factory=lambda: array("d"))
    backlog: list[tuple[BenchConnection, bytes, float]] = field(default_factory=list)
    """Reads stamped but not yet parsed (see :meth:`BenchConnection.data_received`)."""

    def parse_backlog(self) -> None:
        backlog, self.backlog = self.backlog, []
        for conn, data, now in backlog:
            conn.consume(data, now)


_READ_VIEW = memoryview(bytearray(256 * 1024))
"""One read buffer for every connection of the worker: a read is consumed before the next."""


class BenchConnection(ClientConnection, asyncio.BufferedProtocol):
    """A client connection that counts ticks frames without websockets' receive path.

    It is a buffered protocol so that asyncio reads into one preallocated buffer:
    a plain protocol gets ``sock.recv(256 KiB)``, which on Python 3.11 allocates
    256 KiB per read, about 12 us of the ~16 us a small read costs here.
    """

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_VIEW[:nbytes]))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = ClientSpec(-1)
        self.sampler = _Sampler()
        self.track_times = False
        self.fast = False
        self.rest = b""
        self.ticks = 0
        self.frames = 0
        self.nbytes = 0
        self.covered = 0
        """Generated ticks folded into merged updates (sum of merged - 1)."""
        self.other_frames = 0
        self.errors: Counter[str] = Counter()
        self.last_seq: dict[str, int] = {}
        self.held_ts: dict[str, float] = {}
        self.window_counts: Counter[str] = Counter()
        self.window_times: dict[str, list[float]] = {}
        self.merged_updates = 0
        self.unexplained = 0
        self.overcounted = 0
        self.reordered = 0
        self.examples: list[str] = []
        self.subscribed: asyncio.Future[list[str]] = self.loop.create_future()
        self.lost_code: int | None = None
        """The close code received (1006 when none was), once the connection is lost."""
        self.closed_at = 0.0
        self.closing_by_us = False

    def setup(self, spec: ClientSpec, sampler: _Sampler, track_times: bool) -> None:
        self.spec = spec
        self.sampler = sampler
        self.track_times = track_times

    # -- receive ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Stamp the read now and parse it a little later, after the burst of reads it is in.

        When one tick reaches 100 clients of a worker at once, parsing each read
        before the next socket is read would add the earlier clients' parsing
        time to the later clients' latency (about 1 ms at 100 verified clients):
        a cost of the tool, not of the server. The server writes such a burst
        over about 0.6 ms, so parsing waits PARSE_DELAY for the rest of it.
        """
        if not self.fast:
            super().data_received(data)
            return
        backlog = self.sampler.backlog
        if not backlog:
            self.loop.call_later(PARSE_DELAY, self.sampler.parse_backlog)
        backlog.append((self, data, time.time()))

    def consume(self, data: bytes, now: float) -> None:
        """Account for the frames in ``data``, read at ``now``."""
        if self.rest:
            data = self.rest + data
            self.rest = b""
        n = len(data)
        pos = 0
        while n - pos >= 2:
            length = data[pos + 1]
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            else:  # a masked frame from a server: let websockets fail the connection
                self.fast = False
                super().data_received(data[pos:])
                return
            end = start + length
            if end > n:
                break
            if data[pos] == FIN_TEXT:
                self.on_frame(data, start, end, now)
            else:
                super().data_received(data[pos:end])
            pos = end
        if pos < n:
            self.rest = data[pos:]

    def on_frame(self, data: bytes, start: int, end: int, now: float) -> None:
        """Account for one text message held in ``data[start:end]``."""
        if not data.startswith(TICKS_PREFIX, start):
            self.on_other(data[start:end], now)
            return
        self.ticks += data.count(b'"seq"', start, end)
        self.frames += 1
        self.nbytes += end - start
        if self.spec.verified:
            self.verify(json.loads(data[start:end])["ticks"], now)
            return
        if data.find(b'"merged"', start, end) >= 0:
            for merged in MERGED_RE.findall(data, start, end):
                self.covered += int(merged) - 1
        sampler = self.sampler
        if sampler.measuring and not self.spec.slow:
            sampler.left -= 1
            if sampler.left <= 0:
                sampler.left = sampler.stride
                latency = sampler.latency
                for ts in TS_RE.findall(data, start, end):
                    latency.append(now - float(ts))

    def verify(self, ticks: list[dict[str, Any]], now: float) -> None:
        """Check parsed ticks: seq against merged, held ts, per-symbol counts."""
        sampler = self.sampler
        sample = False
        if sampler.measuring and not self.spec.slow:
            sampler.left -= 1
            if sampler.left <= 0:
                sampler.left = sampler.stride
                sample = True
        measuring = sampler.measuring
        for tick in ticks:
            symbol = tick["symbol"]
            seq = tick["seq"]
            ts = tick["ts"]
            merged = tick.get("merged") or 1
            if merged > 1:
                self.merged_updates += 1
                self.covered += merged - 1
            last = self.last_seq.get(symbol)
            if last is not None and seq - last != merged:
                step = seq - last
                if step <= 0:
                    self.reordered += 1
                elif step > merged:
                    self.unexplained += 1
                else:
                    self.overcounted += 1
                if len(self.examples) < MAX_EXAMPLES:
                    self.examples.append(f"{symbol}: seq {last} -> {seq} with merged {merged}")
            self.last_seq[symbol] = seq
            self.held_ts[symbol] = ts
            if sample:
                sampler.latency.append(now - ts)
            if measuring:
                self.window_counts[symbol] += 1
                if self.track_times:
                    self.window_times.setdefault(symbol, []).append(now)

    def on_other(self, payload: bytes | str, now: float) -> None:
        """A message off the fast path: control messages, or ticks laid out differently."""
        try:
            message = json.loads(payload)
            kind = message.get("type")
        except (ValueError, AttributeError):
            self.errors["unparsable frame"] += 1
            return
        if kind == "ticks":
            ticks = message.get("ticks") or []
            self.ticks += len(ticks)
            self.frames += 1
            self.nbytes += len(payload)
            self.verify(ticks, now)
            return
        self.other_frames += 1
        if kind == "subscribed" and not self.subscribed.done():
            self.subscribed.set_result(list(message.get("symbols", [])))
        elif kind == "error":
            self.errors[f"error {message.get('code')}"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.closed_at = time.time()
        rcvd = self.protocol.close_rcvd
        self.lost_code = rcvd.code if rcvd is not None else 1006


async def _plain_reader(conn: BenchConnection) -> None:
    """The websockets receive path, for --plain runs and the rare client without a fast path."""
    try:
        while True:
            message = await conn.recv(decode=False)
            conn.on_frame(message, 0, len(message), time.time())
    except Exception:  # closed: connection_lost recorded why
        return


class Worker:
    """Opens its share of the clients, counts what they receive and reports to the parent."""

    def __init__(
        self,
        slot: int,
        specs: list[ClientSpec],
        options: LoadOptions,
        control: SynchronizedArray[float],
        queue: Queue[tuple[str, int, dict[str, Any]]],
    ) -> None:
        self.slot = slot
        self.specs = specs
        self.options = options
        self.control = control
        self.queue = queue
        self.sampler = _Sampler()
        self.conns: list[BenchConnection] = []
        self.failures: Counter[str] = Counter()
        self.readers: set[asyncio.Task[None]] = set()
        self.window: dict[str, Any] = {}

    def _symbols_for(self, index: int, offered: list[str]) -> list[str]:
        universe = list(self.options.symbols) if self.options.symbols else offered
        k = self.options.per_client or len(universe)
        if not self.options.spread:
            return universe[:k]
        return [universe[(index + j) % len(universe)] for j in range(min(k, len(universe)))]

    async def open_client(self, spec: ClientSpec, gate: asyncio.Semaphore) -> None:
        options = self.options
        async with gate:
            sock: socket.socket | None = None
            try:
                if spec.slow:
                    parts = urlsplit(options.url)
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    # Set before connecting, so the advertised window stays small.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, options.slow_rcvbuf)
                    sock.setblocking(False)
                    await asyncio.get_running_loop().sock_connect(
                        sock, (parts.hostname or "127.0.0.1", parts.port or 80)
                    )
                conn = await connect(
                    options.url,
                    sock=sock,
                    create_connection=BenchConnection,
                    open_timeout=options.open_timeout,
                    ping_interval=None,
                    close_timeout=2,
                    max_size=None,
                    compression=None,
                )
            except Exception as exc:
                if sock is not None:
                    sock.close()
                self.failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                return
            assert isinstance(conn, BenchConnection)
            try:
                await self._subscribe(conn, spec)
            except Exception as exc:
                self.failures[f"subscribe: {type(exc).__name__}: {str(exc)[:80]}"] += 1
                conn.transport.abort()

    async def _subscribe(self, conn: BenchConnection, spec: ClientSpec) -> None:
        options = self.options
        conn.setup(spec, self.sampler, options.track_times)
        hello = json.loads(await asyncio.wait_for(conn.recv(), options.open_timeout))
        symbols = self._symbols_for(spec.index, list(hello.get("symbols", [])))
        request: dict[str, Any] = {"type": "subscribe", "symbols": symbols}
        if options.max_rate:
            request["max_rate"] = options.max_rate
        # Nothing is in flight between hello and our subscribe, so the stream is at a
        # frame boundary and the fast path can take over.
        conn.fast = not options.plain and not conn.protocol.reader.buffer
        if not conn.fast:
            task = asyncio.get_running_loop().create_task(_plain_reader(conn))
            self.readers.add(task)
        await conn.send(json.dumps(request))
        await asyncio.wait_for(conn.subscribed, options.open_timeout)
        self.conns.append(conn)
        if spec.slow:
            if options.slow_after > 0:
                await asyncio.sleep(options.slow_after)
            conn.transport.pause_reading()
            if options.slow_for > 0:
                conn.loop.call_later(options.slow_for, conn.transport.resume_reading)

    # -- the run ------------------------------------------------------------------------

    def _totals(self) -> dict[str, Any]:
        conns = self.conns
        return {
            "ticks": sum(c.ticks for c in conns),
            "frames": sum(c.frames for c in conns),
            "bytes": sum(c.nbytes for c in conns),
            "covered": sum(c.covered for c in conns),
            "open": sum(1 for c in conns if c.lost_code is None),
            "cpu": time.process_time(),
            "time": time.time(),
        }

    async def _report_progress(self) -> None:
        last_ticks, last_time, lat_index = 0, time.time(), 0
        while True:
            await asyncio.sleep(1.0)
            totals = self._totals()
            lat = self.sampler.latency
            recent = sorted(lat[lat_index:])
            lat_index = len(lat)
            totals["p99_recent"] = recent[int(len(recent) * 0.99)] if recent else None
            self.queue.put(("progress", self.slot, totals))
            rate = (totals["ticks"] - last_ticks) / max(totals["time"] - last_time, 1e-3)
            last_ticks, last_time = totals["ticks"], totals["time"]
            self.sampler.stride = max(1, round(rate / self.options.latency_rate))

    async def _sample_freshness(self) -> None:
        options = self.options
        while True:
            await asyncio.sleep(options.freshness_period * (0.5 + random.random()))
            if not self.sampler.measuring:
                continue
            pool = [c for c in self.conns if c.spec.verified and not c.spec.slow]
            now = time.time()
            fresh = self.sampler.freshness
            for conn in random.sample(pool, min(len(pool), options.freshness_clients)):
                for ts in conn.held_ts.values():
                    fresh.append(now - ts)

    def _begin(self) -> None:
        self.window["start"] = self._totals()
        self.window["per_client"] = [c.ticks for c in self.conns]
        self.window["closed_before"] = sum(1 for c in self.conns if c.lost_code is not None)
        self.sampler.measuring = True

    def _end(self) -> None:
        self.sampler.measuring = False
        self.window["end"] = self._totals()
        self.window["per_client_end"] = [c.ticks for c in self.conns]

    async def _wait_control(self, slot: int) -> float:
        while self.control[slot] == 0.0:
            if self.control[T_ABORT]:
                raise asyncio.CancelledError
            await asyncio.sleep(0.02)
        return self.control[slot]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(self.options.connect_concurrency)
        progress = loop.create_task(self._report_progress())
        freshness = loop.create_task(self._sample_freshness())
        try:
            opens = [loop.create_task(self.open_client(spec, gate)) for spec in self.specs]
            go = loop.create_task(self._wait_control(T_START))
            opened: asyncio.Future[list[None]] = asyncio.gather(*opens)
            waiters: list[asyncio.Future[Any]] = [go, opened]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            late = [task for task in opens if not task.done()]
            if late:  # the parent's connect deadline passed: measure with who is there
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
                self.failures["not connected before --connect-timeout"] += len(late)
            gc.collect()
            gc.freeze()
            self.queue.put(("ready", self.slot, {"connected": len(self.conns)}))
            start = await go
            await asyncio.sleep(max(start - time.time(), 0.0))
            self._begin()
            end = await self._wait_control(T_END)
            await asyncio.sleep(max(end - time.time(), 0.0))
            self._end()
            await self._drain_slow()
        except asyncio.CancelledError:
            self.window.setdefault("start", self._totals())
            self.window.setdefault("end", self._totals())
            self.window.setdefault("per_client", [c.ticks for c in self.conns])
        finally:
            progress.cancel()
            freshness.cancel()
        self.queue.put(("result", self.slot, self._result()))
        await self._close_all()

    async def _drain_slow(self) -> None:
        slow = [c for c in self.conns if c.spec.slow and c.lost_code is None]
        for conn in slow:
            conn.transport.resume_reading()
        if slow:
            await asyncio.wait([c.connection_lost_waiter for c in slow], timeout=self.options.drain)

    async def _close_all(self) -> None:
        open_conns = [c for c in self.conns if c.lost_code is None]
        for conn in open_conns:
            conn.closing_by_us = True
        for task in self.readers:
            task.cancel()
        if open_conns:
            await asyncio.wait([asyncio.ensure_future(c.close()) for c in open_conns], timeout=5)
        for conn in open_conns:
            if conn.protocol.state is not State.CLOSED:
                conn.transport.abort()

    def _result(self) -> dict[str, Any]:
        window = self.window
        before = window.get("per_client", [])
        after = window.get("per_client_end", [c.ticks for c in self.conns])
        per_client = [
            {"index": c.spec.index, "slow": c.spec.slow, "delivered": after[i] - before[i]}
            for i, c in enumerate(self.conns[: len(before)])
        ]
        closes: Counter[str] = Counter()
        slow_closes: Counter[str] = Counter()
        slow_close_times: list[float] = []
        for conn in self.conns:
            if conn.closing_by_us:
                continue
            code = "open" if conn.lost_code is None else str(conn.lost_code)
            if conn.spec.slow:
                slow_closes[code] += 1
                if conn.lost_code is not None:
                    slow_close_times.append(conn.closed_at)
            elif conn.lost_code is not None:
                closes[code] += 1
        verified = [c for c in self.conns if c.spec.verified]
        rates: list[float] = []
        per_second_max = 0
        start_t = window.get("start", {}).get("time", 0.0)
        for conn in verified:
            if conn.spec.slow:
                continue
            rates.extend(conn.window_counts.values())
            for times in conn.window_times.values():
                buckets = Counter(int(t - start_t) for t in times)
                per_second_max = max(per_second_max, max(buckets.values(), default=0))
        errors: Counter[str] = Counter()
        for conn in self.conns:
            errors.update(conn.errors)
        return {
            "start": window.get("start"),
            "end": window.get("end"),
            "per_client": per_client,
            "latency": self.sampler.latency.tobytes(),
            "freshness": self.sampler.freshness.tobytes(),
            "failures": dict(self.failures),
            "connected": len(self.conns),
            "closes": dict(closes),
            "slow_closes": dict(slow_closes),
            "slow_close_times": slow_close_times,
            "verify": {
                "clients": len(verified),
                "merged_updates": sum(c.merged_updates for c in verified),
                "unexplained": sum(c.unexplained for c in verified),
                "overcounted": sum(c.overcounted for c in verified),
                "reordered": sum(c.reordered for c in verified),
                "examples": [e for c in verified for e in c.examples][:MAX_EXAMPLES],
            },
            "symbol_counts": rates,
            "per_second_max": per_second_max,
            "errors": dict(errors),
            "fast": sum(1 for c in self.conns if c.fast),
        }


def run_worker(
    slot: int,
    specs: list[ClientSpec],
    options: LoadOptions,
    control: SynchronizedArray[float],
    queue: Queue[tuple[str, int, dict[str, Any]]],
) -> None:
    """Process entry point: raise the file limit, then run the worker's loop to the end."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = len(specs) + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    asyncio.run(Worker(slot, specs, options, control, queue).run())
