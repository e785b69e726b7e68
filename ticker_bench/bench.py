"""``ticker-bench``: load any protocol v1 server with many clients and report what they got.

The parent process spreads the clients over worker processes (:mod:`.loadgen`), samples
the server's CPU and RSS from /proc when given its pid, prints a live progress line on
stderr, and merges the workers' results into a table and an optional JSON report
(:mod:`.report`). A run is bounded: connect, warm up, measure for ``--duration``, let
slow clients drain, close everything.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import re
import resource
import sys
import time
import urllib.request
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

from .loadgen import T_ABORT, T_END, T_START, ClientSpec, LoadOptions, run_worker
from .report import ServerSample, ServerTrace, build_report, format_table

__all__ = ["main", "parse_args", "read_proc", "run"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def read_proc(pid: int) -> ServerSample | None:
    """CPU seconds and RSS of a local process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read().split()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return ServerSample(time.time(), cpu, int(statm[1]) * PAGE_KIB)


def read_cores() -> dict[str, tuple[int, int]]:
    """Busy and total jiffies per core, from /proc/stat."""
    out: dict[str, tuple[int, int]] = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(v) for v in values[:8]]
                idle = ticks[3] + ticks[4]
                out[name] = (sum(ticks) - idle, sum(ticks))
    return out


def _core_busy(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, float]:
    """Percent busy of each core between two :func:`read_cores` readings (all processes)."""
    return {
        name: round(100 * (after[name][0] - b[0]) / max(after[name][1] - b[1], 1), 1)
        for name, b in before.items()
        if name in after
    }


def _spread(count: int, share: float) -> set[int]:
    """``share`` of ``count`` indices, evenly spaced."""
    n = min(count, round(count * share))
    return {int(j * count / n) for j in range(n)} if n > 0 else set()


def _metrics(url: str) -> dict[str, float]:
    """The server's Prometheus counters (ticker_server's /metrics), or {} when there are none."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    try:
        with urllib.request.urlopen(f"{scheme}://{parts.netloc}/metrics", timeout=1) as response:
            text = response.read().decode()
    except Exception:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) ([-0-9.eE+]+)$", line)
        if match:
            out[match.group(1)] = float(match.group(2))
    return out


class _Progress:
    """The live progress line: rates over the last second, from the workers' reports."""

    def __init__(self, enabled: bool, clients: int) -> None:
        self.enabled = enabled
        self.clients = clients
        self.latest: dict[int, dict[str, Any]] = {}
        self.previous: tuple[float, int, int, int] | None = None
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0

    def show(self, phase: str, elapsed: float, server_cpu: float | None) -> None:
        if not self.enabled or not self.latest:
            return
        now = time.time()
        if now - self.last_print < (1.0 if self.tty else 5.0):
            return
        self.last_print = now
        total = {
            k: sum(w[k] for w in self.latest.values()) for k in ("ticks", "frames", "bytes", "open")
        }
        p99 = [w["p99_recent"] for w in self.latest.values() if w.get("p99_recent") is not None]
        line = f"[{elapsed:6.1f}s {phase:<10}] open {total['open']:,}/{self.clients:,}"
        if self.previous is not None:
            dt = max(now - self.previous[0], 1e-3)
            line += (
                f"  ticks/s {(total['ticks'] - self.previous[1]) / dt:,.0f}"
                f"  frames/s {(total['frames'] - self.previous[2]) / dt:,.0f}"
                f"  MB/s {(total['bytes'] - self.previous[3]) / dt / 1e6:,.1f}"
            )
        if p99:
            line += f"  p99 {max(p99) * 1e3:,.1f} ms"
        if server_cpu is not None:
            line += f"  server cpu {server_cpu:.0f}%"
        self.previous = (now, total["ticks"], total["frames"], total["bytes"])
        sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ticker-bench",
        description="Load a protocol v1 server with many WebSocket clients and report "
        "throughput, latency, freshness, fairness, seq integrity and server CPU/RSS.",
    )
    parser.add_argument("--url", required=True, help="ws://HOST:PORT of the server")
    parser.add_argument("--clients", type=int, default=100, help="connections (default 100)")
    parser.add_argument(
        "--workers", type=int, default=0, help="worker processes (default: the cores we may use)"
    )
    parser.add_argument("--symbols", help="comma list to subscribe to (default: hello's symbols)")
    parser.add_argument("--per-client", type=int, default=0, help="symbols per client (0: all)")
    parser.add_argument(
        "--spread", action="store_true", help="rotate each client's symbols through the list"
    )
    parser.add_argument("--max-rate", type=float, help="max_rate asked in subscribe")
    parser.add_argument("--slow-share", type=float, default=0.0, help="share of slow clients")
    parser.add_argument(
        "--slow-rcvbuf", type=int, default=4096, help="SO_RCVBUF of slow clients (4096)"
    )
    parser.add_argument(
        "--slow-after", type=float, default=0.0, help="seconds after subscribing they stop reading"
    )
    parser.add_argument(
        "--slow-for",
        type=float,
        default=0.0,
        help="seconds they stay stopped before reading again (0: until the window ends)",
    )
    parser.add_argument(
        "--verify-share",
        type=float,
        default=0.02,
        help="share of clients that parse every frame to check seq vs merged (0.02)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (2)")
    parser.add_argument(
        "--idle", type=float, default=1.0, help="seconds sampling the idle server first (1)"
    )
    parser.add_argument(
        "--drain", type=float, default=5.0, help="seconds slow clients read after the window (5)"
    )
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=50_000.0,
        help="ticks per second per worker whose latency is sampled (50000)",
    )
    parser.add_argument("--pid", type=int, help="local server pid: sample its CPU and RSS")
    parser.add_argument(
        "--server-metrics", action="store_true", help="also poll the server's /metrics"
    )
    parser.add_argument("--plain", action="store_true", help="use websockets' recv() per frame")
    parser.add_argument("--json", help="write the report to this file")
    parser.add_argument("--label", default="", help="a name for this run in the report")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser.parse_args(argv)


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one load test and return its report."""
    cores = len(os.sched_getaffinity(0))
    workers = max(1, min(args.workers or cores, args.clients))
    _raise_nofile(args.clients + 1024)
    options = LoadOptions(
        url=args.url,
        symbols=tuple(s.strip() for s in args.symbols.split(",")) if args.symbols else None,
        per_client=args.per_client,
        spread=args.spread,
        max_rate=args.max_rate,
        slow_rcvbuf=args.slow_rcvbuf,
        slow_after=args.slow_after,
        slow_for=args.slow_for,
        connect_concurrency=max(1, args.connect_concurrency // workers),
        open_timeout=min(args.connect_timeout, 60.0),
        latency_rate=args.latency_rate / workers,
        drain=args.drain,
        plain=args.plain,
        track_times=bool(args.max_rate),
    )
    slow = _spread(args.clients, args.slow_share)
    verified = _spread(args.clients, args.verify_share) or {0}
    specs: list[list[ClientSpec]] = [[] for _ in range(workers)]
    for i in range(args.clients):
        specs[i % workers].append(ClientSpec(i, i in slow, i in verified))

    trace = ServerTrace()
    pid: int | None = args.pid

    def sample() -> ServerSample | None:
        return read_proc(pid) if pid else None

    began = time.time()
    trace.idle_start = sample()
    time.sleep(args.idle)
    trace.idle_end = sample()
    metrics: list[tuple[float, dict[str, float]]] = []

    ctx = mp.get_context("spawn")
    control = ctx.Array("d", 3)
    results_q: Any = ctx.Queue()
    procs = [
        ctx.Process(target=run_worker, args=(slot, specs[slot], options, control, results_q))
        for slot in range(workers)
    ]
    for proc in procs:
        proc.start()
    progress = _Progress(not args.quiet, args.clients)
    ready: set[int] = set()
    results: dict[int, dict[str, Any]] = {}
    connect_deadline = time.time() + args.connect_timeout
    t_start = t_end = t_ready = 0.0
    last = trace.idle_end
    server_cpu: float | None = None
    phase = "connecting"
    cores_start: dict[str, tuple[int, int]] = {}
    cores_end: dict[str, tuple[int, int]] = {}
    try:
        while len(results) < workers:
            try:
                kind, slot, payload = results_q.get(timeout=0.25)
            except queue_mod.Empty:
                kind, slot, payload = "", -1, {}
            now = time.time()
            if kind == "progress":
                progress.latest[slot] = payload
            elif kind == "ready":
                ready.add(slot)
            elif kind == "result":
                results[slot] = payload
            current = sample()
            if current is not None:
                trace.samples.append(current)
                if last is not None and current.time - last.time >= 1.0:
                    server_cpu = 100 * (current.cpu - last.cpu) / (current.time - last.time)
                    last = current
            if not t_start and (len(ready) == workers or now > connect_deadline):
                trace.ready = sample()
                t_ready = now
                t_start = now + args.warmup
                t_end = t_start + args.duration
                control[T_START], control[T_END] = t_start, t_end
                phase = "warmup"
            if t_start and now >= t_start and trace.start is None:
                trace.start = sample()
                cores_start = read_cores()
                phase = "measuring"
            if t_end and now >= t_end and trace.end is None:
                trace.end = sample()
                cores_end = read_cores()
                phase = "draining"
            if args.server_metrics and (not metrics or now - metrics[-1][0] >= 0.5):
                metrics.append((now, _metrics(args.url)))
            if t_end and now > t_end + args.drain + 30:
                break  # a worker that never reports: give up on it
            if not all(p.is_alive() for p in procs) and len(results) < workers:
                dead = [p for i, p in enumerate(procs) if not p.is_alive() and i not in results]
                if dead and results_q.empty():
                    time.sleep(0.5)
                    if results_q.empty():
                        break
            progress.show(phase, now - began, server_cpu)
    finally:
        control[T_ABORT] = 1.0
        progress.done()
        for proc in procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.terminate()
    config = {k: v for k, v in vars(args).items() if k not in ("json", "quiet")} | {
        "workers": workers
    }
    extra: dict[str, Any] = {
        "label": args.label,
        "machine": {
            "cpus": os.cpu_count(),
            "tool_cores": sorted(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "websockets": version("websockets"),
            "platform": platform.platform(),
        },
        "workers_reported": len(results),
        "core_busy_percent": _core_busy(cores_start, cores_end) if cores_end else {},
    }
    if metrics:
        extra["server_metrics"] = _metrics_summary(metrics, t_start, t_end, t_ready)
    return build_report(config, [results[k] for k in sorted(results)], trace, cores, extra)


def _metrics_summary(
    series: list[tuple[float, dict[str, float]]], t_start: float, t_end: float, t_ready: float
) -> dict[str, Any]:
    """Counter deltas over the window, and when the server first closed a slow consumer."""
    before = next((m for t, m in reversed(series) if t <= t_start), series[0][1])
    after = next((m for t, m in series if t >= t_end), series[-1][1])
    deltas = {k: after[k] - before.get(k, 0.0) for k in after if k.endswith("_total")}
    first = series[0][1].get("ticker_slow_consumer_closes_total", 0.0)
    closes = [t for t, m in series if m.get("ticker_slow_consumer_closes_total", 0.0) > first]
    return {
        "window_deltas": deltas,
        "slow_closes_total": series[-1][1].get("ticker_slow_consumer_closes_total"),
        "first_slow_close_after_start_s": round(closes[0] - t_start, 2) if closes else None,
        "first_slow_close_after_ready_s": round(closes[0] - t_ready, 2) if closes else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.clients < 1 or args.duration <= 0:
        print("ticker-bench: --clients and --duration must be positive", file=sys.stderr)
        return 2
    report = run(args)
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0 if report["clients"]["connected"] else 1


if __name__ == "__main__":
    sys.exit(main())
