"""Tick latency of ordinary clients while 100 clients page through a session of 1 s bars (issue 13).

``python -m benchmarks.bars_load`` starts a server at its defaults (a 6.5 h backfill,
so 23,400 one-second bars per symbol), connects ``--tick-clients`` clients that each
subscribe to every symbol and record ``receive time - tick ts`` for every tick, then
alternates two phases ``--rounds`` times in the same run:

* ``without``: ``--quiet`` seconds of ticks alone;
* ``with``: a separate process connects ``--pagers`` clients (symbols round robin) that
  each page back through the whole session of 1 s bars at once (``limit`` 5,000,
  ``before`` the oldest bar of the previous page, until a page comes back short); the
  phase lasts from the first request to the last page.

It prints p50/p99 tick latency for each phase and their ratio (the goal: with/without
p99 <= 1.2), and how long the paging took. ``--pager-worker URL`` is the pagers' process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from typing import Any

import numpy as np
from websockets.asyncio.client import connect

__all__ = ["main"]

PY = sys.executable
FIRST_T = re.compile(rb'"bars":\[\{"t":(\d+)')
SERVING = re.compile(r"serving (ws://\S+)")


async def page_through(url: str, symbol: str, limit: int, go: asyncio.Event) -> int:
    """One pager: every 1 s bar of ``symbol``, newest page first; the bars read."""
    async with connect(url, max_size=None, max_queue=None, compression=None) as ws:
        await ws.recv()  # hello
        await go.wait()
        before: int | None = None
        total = 0
        for rid in range(1000):  # bounded: 23,400 bars is 5 pages
            request: dict[str, Any] = {
                "type": "bars", "symbol": symbol, "interval": 1, "limit": limit, "id": rid,
            }  # fmt: skip
            if before is not None:
                request["before"] = before
            await ws.send(json.dumps(request))
            page = 0
            first: int | None = None
            while True:
                frame = await ws.recv(decode=False)
                if not frame.startswith(b'{"type":"bars"'):
                    continue
                match = FIRST_T.match(frame, frame.index(b'"bars":['))
                if first is None and match is not None:
                    first = int(match.group(1))
                page += frame.count(b'{"t":')
                if frame.endswith(b'"done":true}'):
                    break
            total += page
            if page < limit or first is None:
                return total
            before = first
        return total


async def pager_worker(url: str, pagers: int, limit: int) -> None:
    """Connect every pager, then page at once; print the window and the bars read."""
    from ticker_server.market import listings_for

    symbols = [x.symbol for x in listings_for(None)]
    go = asyncio.Event()
    tasks = [
        asyncio.create_task(page_through(url, symbols[i % len(symbols)], limit, go))
        for i in range(pagers)
    ]
    await asyncio.sleep(1.0)  # connections and hellos (outside the measured window)
    started = time.time()
    go.set()
    counts = await asyncio.gather(*tasks)
    print(json.dumps({"start": started, "end": time.time(), "bars": sum(counts)}), flush=True)


class Latencies:
    """Every tick's latency, with the time it was received."""

    def __init__(self) -> None:
        self.at: list[float] = []
        self.latency: list[float] = []

    def between(self, start: float, end: float) -> np.ndarray[Any, Any]:
        at = np.array(self.at)
        return np.array(self.latency)[(at >= start) & (at <= end)]


async def tick_client(url: str, latencies: Latencies, ready: asyncio.Event) -> None:
    async with connect(url, max_size=None, compression=None) as ws:
        hello = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "subscribe", "symbols": hello["symbols"]}))
        ready.set()
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            if message.get("type") == "ticks":
                for tick in message["ticks"]:
                    latencies.at.append(now)
                    latencies.latency.append(now - tick["ts"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(samples: np.ndarray[Any, Any]) -> dict[str, float]:
    ms = samples * 1e3
    return {
        "ticks": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "p999_ms": round(float(np.percentile(ms, 99.9)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def pin(cores: str | None) -> Any:
    """A preexec_fn that pins a child process to ``cores`` ("0" or "0,1"), or None."""
    if not cores:
        return None
    wanted = {int(c) for c in cores.split(",")}
    return lambda: os.sched_setaffinity(0, wanted)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.client_cores:  # this process and the pagers' (which inherits it)
        os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    env = dict(os.environ)
    if args.server_path:  # e.g. another checkout's tree, to compare builds
        env["PYTHONPATH"] = args.server_path
    server = await asyncio.create_subprocess_exec(
        PY, "-m", "ticker_server", "--port", "0", *args.server_arg,
        stderr=asyncio.subprocess.PIPE, env=env, preexec_fn=pin(args.server_cores),
    )  # fmt: skip
    assert server.stderr is not None
    url = ""
    while not url:
        line = (await asyncio.wait_for(server.stderr.readline(), 60)).decode()
        if not line:
            raise SystemExit("server exited before serving")
        if match := SERVING.search(line):
            url = match.group(1)
    drain = asyncio.create_task(server.stderr.read())  # keep its log from filling the pipe
    latencies = Latencies()
    readies = [asyncio.Event() for _ in range(args.tick_clients)]
    clients = [asyncio.create_task(tick_client(url, latencies, r)) for r in readies]
    await asyncio.gather(*(r.wait() for r in readies))
    await asyncio.sleep(1.0)  # the snapshots are in; latency from here on
    rounds = []
    try:
        for _ in range(args.rounds):
            quiet_start = time.time()
            await asyncio.sleep(args.quiet)
            quiet = summary(latencies.between(quiet_start, time.time()))
            worker = await asyncio.create_subprocess_exec(
                PY, "-m", "benchmarks.bars_load", "--pager-worker", url,
                "--pagers", str(args.pagers), "--limit", str(args.limit),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            cpu = cpu_seconds(server.pid)
            out, _ = await asyncio.wait_for(worker.communicate(), args.timeout)
            cpu = cpu_seconds(server.pid) - cpu
            paged = json.loads(out.decode().strip().splitlines()[-1])
            loaded = summary(latencies.between(paged["start"], paged["end"]))
            rounds.append(
                {
                    "without": quiet,
                    "with": loaded,
                    "p99_ratio": round(loaded["p99_ms"] / quiet["p99_ms"], 3),
                    "paging_s": round(paged["end"] - paged["start"], 2),
                    "bars_read": paged["bars"],
                    "server_cpu_s": round(cpu, 2),
                }
            )
    finally:
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        server.terminate()
        await server.wait()
        drain.cancel()
    ratios = [r["p99_ratio"] for r in rounds]
    return {"rounds": rounds, "p99_ratio_median": float(np.median(ratios))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bars_load", description=__doc__.split("\n")[0])
    parser.add_argument("--tick-clients", type=int, default=10)
    parser.add_argument("--pagers", type=int, default=100)
    parser.add_argument("--limit", type=int, default=5000, help="bars per page (the cap)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quiet", type=float, default=6.0, help="seconds without pagers")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--server-arg", action="append", default=[], help="one more server flag (repeatable)"
    )
    parser.add_argument("--server-cores", help="pin the server to these cores, e.g. 0")
    parser.add_argument("--client-cores", help="pin the clients and pagers, e.g. 1")
    parser.add_argument("--server-path", help="PYTHONPATH of the server process")
    parser.add_argument("--pager-worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pager_worker:
        asyncio.run(pager_worker(args.pager_worker, args.pagers, args.limit))
        return 0
    print(json.dumps(asyncio.run(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
