"""One ticker-bench worker process: many protocol v1 clients on one asyncio loop.

Each client (:mod:`.wire`) connects, reads hello and subscribes; what it receives is
counted and checked by its :class:`~.tally.Tally`. The worker opens its share of the
clients, marks the measurement window the parent sets, samples freshness and reports
progress and results to the parent through a queue.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import resource
import socket
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any
from urllib.parse import urlsplit

from .tally import MAX_EXAMPLES, ClientSpec, Sampler
from .wire import BenchClient, open_client

__all__ = ["ClientSpec", "LoadOptions", "Worker", "run_worker"]

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
        self.sampler = Sampler()
        self.conns: list[BenchClient] = []
        self.failures: Counter[str] = Counter()
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
                conn = await open_client(
                    options.url,
                    spec,
                    self.sampler,
                    track_times=options.track_times,
                    plain=options.plain,
                    sock=sock,
                    open_timeout=options.open_timeout,
                )
            except Exception as exc:
                if sock is not None:
                    sock.close()
                self.failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                return
            try:
                await self._subscribe(conn, spec)
            except Exception as exc:
                self.failures[f"subscribe: {type(exc).__name__}: {str(exc)[:80]}"] += 1
                await conn.close()

    async def _subscribe(self, conn: BenchClient, spec: ClientSpec) -> None:
        options = self.options
        hello = await asyncio.wait_for(asyncio.shield(conn.hello), options.open_timeout)
        symbols = self._symbols_for(spec.index, list(hello.get("symbols", [])))
        request: dict[str, Any] = {"type": "subscribe", "symbols": symbols}
        if options.max_rate:
            request["max_rate"] = options.max_rate
        await conn.send(json.dumps(request))
        await asyncio.wait_for(asyncio.shield(conn.subscribed), options.open_timeout)
        self.conns.append(conn)
        if spec.slow:
            if options.slow_after > 0:
                await asyncio.sleep(options.slow_after)
            conn.pause()
            if options.slow_for > 0:
                conn.loop.call_later(options.slow_for, conn.resume)

    # -- the run ------------------------------------------------------------------------

    def _totals(self) -> dict[str, Any]:
        conns = self.conns
        return {
            "ticks": sum(c.tally.ticks for c in conns),
            "frames": sum(c.tally.frames for c in conns),
            "bytes": sum(c.tally.nbytes for c in conns),
            "covered": sum(c.tally.covered for c in conns),
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
                for ts in conn.tally.held_ts.values():
                    fresh.append(now - ts)

    def _begin(self) -> None:
        self.window["start"] = self._totals()
        self.window["per_client"] = [c.tally.ticks for c in self.conns]
        self.window["closed_before"] = sum(1 for c in self.conns if c.lost_code is not None)
        self.sampler.measuring = True

    def _end(self) -> None:
        self.sampler.measuring = False
        self.window["end"] = self._totals()
        self.window["per_client_end"] = [c.tally.ticks for c in self.conns]

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
            self.window.setdefault("per_client", [c.tally.ticks for c in self.conns])
        finally:
            progress.cancel()
            freshness.cancel()
        self.queue.put(("result", self.slot, self._result()))
        await self._close_all()

    async def _drain_slow(self) -> None:
        slow = [c for c in self.conns if c.spec.slow and c.lost_code is None]
        for conn in slow:
            conn.resume()
        if slow:
            await asyncio.wait([c.lost for c in slow], timeout=self.options.drain)

    async def _close_all(self) -> None:
        open_conns = [c for c in self.conns if c.lost_code is None]
        for conn in open_conns:
            conn.closing_by_us = True
        if open_conns:
            await asyncio.wait([asyncio.ensure_future(c.close()) for c in open_conns], timeout=5)

    def _result(self) -> dict[str, Any]:
        window = self.window
        before = window.get("per_client", [])
        after = window.get("per_client_end", [c.tally.ticks for c in self.conns])
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
        verified = [c.tally for c in self.conns if c.spec.verified]
        rates: list[float] = []
        per_second_max = 0
        start_t = window.get("start", {}).get("time", 0.0)
        for tally in verified:
            if tally.spec.slow:
                continue
            rates.extend(tally.window_counts.values())
            for times in tally.window_times.values():
                buckets = Counter(int(t - start_t) for t in times)
                per_second_max = max(per_second_max, max(buckets.values(), default=0))
        errors: Counter[str] = Counter()
        for conn in self.conns:
            errors.update(conn.tally.errors)
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
