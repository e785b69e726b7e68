"""Scenario 7 of issue 6: the dashboard's charts under 20 symbols x 100 ticks/s.

``python -m benchmarks.desktop_bench`` runs, per repeat and each in a fresh process
(:mod:`benchmarks.desktop_probe`, pinned with taskset to ``--ui-core``):

* ``ours/synthetic``: the real dashboard window, grid view, 20 charts pre-filled with
  50k points each, fed synthetic ticks at exactly 100/s per symbol through the store
  (isolates rendering);
* ``ours/server``: the same window connected, as a user would, to a
  ``python -m ticker_server --tick-rate 100 --max-rate 0 --history 300`` child pinned to
  ``--server-core``;
* ``baseline/synthetic`` (with ``--baseline``): the textbook pyqtgraph way
  (:mod:`benchmarks.textbook_charts`) under the same synthetic load.

It prints a table of goal, ours and baseline (median and range over the repeats) and
writes every run's figures with ``--json``. Qt runs offscreen unless ``QT_QPA_PLATFORM``
says otherwise (``QT_QPA_PLATFORM=xcb xvfb-run -s '-screen 0 1600x1000x24' python -m
benchmarks.desktop_bench``). ``--soak`` is the 10-minute memory check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["format_table", "main", "parse_args", "summarize"]

_SERVING = re.compile(r"serving (ws://[\d.]+:\d+)")
HISTORY = 300
"""The server's --history. Its default (1000) lets a snapshot outgrow the 64 KiB frame limit
(about 125 bytes a tick), which the dashboard answers by closing (1009) and reconnecting, again
and again; 300 ticks stay under the limit."""

ROWS: tuple[tuple[str, str, str], ...] = (
    ("chart refreshes /s, slowest chart", "chart_refreshes_per_s.min", ">= 30"),
    ("chart refreshes /s, median chart", "chart_refreshes_per_s.median", "-"),
    ("frame time ms p50", "frame_ms.p50", "-"),
    ("frame time ms p99", "frame_ms.p99", "<= 33"),
    ("frame time ms max", "frame_ms.max", "-"),
    ("time between a chart's refreshes ms p99", "refresh_interval_ms.p99", "-"),
    ("paints /s per canvas", "paints_per_s", "-"),
    ("tick-to-screen ms p50", "latency_ms.p50", "-"),
    ("tick-to-screen ms p99", "latency_ms.p99", "<= 100"),
    ("freezes (stalls > 250 ms)", "stalls.freezes", "0"),
    ("longest event-loop stall ms", "stalls.longest_ms", "-"),
    ("ticks taken in /s", "ticks_per_s", "-"),
    ("generated ticks they stand for /s", "generated_ticks_per_s", "-"),
    ("process CPU % of a core", "cpu_percent", "-"),
    ("busy % of its core (all processes)", "own_core_busy_percent", "-"),
    ("busy % of the other core (all processes)", "other_core_busy_percent", "-"),
    ("server CPU %", "server_cpu_percent", "-"),
    ("X server (Xvfb) CPU %", "xserver_cpu_percent", "-"),
    ("connections made (1: never reconnected)", "connections", "1"),
    ("RSS MB at start", "rss_start_mb", "-"),
    ("RSS MB at end", "rss_end_mb", "-"),
    ("RSS growth %", "rss_growth_percent", "<= 5 over 10 min"),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.desktop_bench",
        description="Scenario 7: the dashboard's 20 live charts under 20 symbols x 100 ticks/s.",
    )
    parser.add_argument(
        "--feed", choices=["synthetic", "server", "both"],
        help="what feeds ours (default: both; synthetic with --soak)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", action="store_true", help="also run the textbook pyqtgraph baseline"
    )
    parser.add_argument("--charts", type=int, default=20)
    parser.add_argument("--points", type=int, default=50_000, help="history per chart")
    parser.add_argument("--rate", type=float, default=100.0, help="ticks/s per symbol")
    parser.add_argument(
        "--duration", type=float, help="measured seconds (default 20; 600 with --soak)"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds fed before measuring")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each kind, interleaved")
    parser.add_argument(
        "--soak", action="store_true", help="the 10-minute memory check (ours; RSS every 10 s)"
    )
    parser.add_argument(
        "--unthrottled", action="store_true",
        help="server feed: ask for every tick (default: the dashboard's own max_rate, 60/s)",
    )  # fmt: skip
    parser.add_argument("--ui-core", type=int, default=1, help="core for the charts (-1: any)")
    parser.add_argument("--server-core", type=int, default=0, help="core for the server (-1: any)")
    parser.add_argument("--json", help="write every run and the summary here")
    parser.add_argument(
        "--indicators",
        default="",
        help="indicators on every chart of ours ('desk': SMA 20, EMA 50, VWAP, Bollinger)",
    )
    args = parser.parse_args(argv)
    if args.feed is None:
        args.feed = "synthetic" if args.soak else "both"
    if args.duration is None:
        args.duration = 600.0 if args.soak else 20.0
    if args.charts < 1 or args.points < 2 or args.duration <= 0 or args.repeat < 1:
        parser.error("--charts, --points, --duration and --repeat must be positive")
    return args


def _pinned(core: int) -> list[str]:
    """A taskset prefix for ``core``, or nothing when pinning is off or impossible."""
    if core < 0 or core >= (os.cpu_count() or 1) or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(core)]


class Server:
    """A ticker_server child on a free 127.0.0.1 port; its log is drained by a thread."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.proc = subprocess.Popen(
            [
                *_pinned(args.server_core), sys.executable, "-m", "ticker_server",
                "--host", "127.0.0.1", "--port", "0", "--tick-rate", f"{args.rate:g}",
                "--max-rate", "0", "--history", str(HISTORY), "--seed", "1",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.log: deque[str] = deque(maxlen=20)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = self._wait_serving(30.0)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip())
            self._lines.put(line)
        self._lines.put(None)

    def _wait_serving(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.stop()
                raise RuntimeError("ticker_server exited: " + " | ".join(self.log))
            match = _SERVING.search(line)
            if match:
                return match.group(1)
        self.stop()
        raise RuntimeError(f"ticker_server did not serve within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _xserver_pid() -> int | None:
    """The pid of the one Xvfb running, when Qt draws through X (xcb) and there is one."""
    if os.environ.get("QT_QPA_PLATFORM") != "xcb":
        return None
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "Xvfb":
                found.append(int(entry.name))
        except OSError:
            continue
    return found[0] if len(found) == 1 else None


def run_probe(
    target: str, args: argparse.Namespace, server: Server | None, out: Path
) -> dict[str, Any]:
    """One run in a fresh process; returns its report."""
    cmd = [
        *_pinned(args.ui_core), sys.executable, "-m", "benchmarks.desktop_probe",
        "--target", target, "--charts", str(args.charts), "--points", str(args.points),
        "--rate", f"{args.rate:g}", "--duration", f"{args.duration:g}",
        "--warmup", f"{args.warmup:g}", "--rss-every", "10" if args.soak else "5",
        "--out", str(out),
        *(["--indicators", args.indicators] if args.indicators and target == "ours" else []),
    ]  # fmt: skip
    if server is not None:
        cmd += ["--url", server.url, "--server-pid", str(server.proc.pid)]
    if args.unthrottled:
        cmd.append("--unthrottled")
    xserver = _xserver_pid()
    if xserver is not None:
        cmd += ["--xserver-pid", str(xserver)]
    # Pre-filling a million ticks takes 15-30 s; anything far beyond that is a hang.
    budget = args.duration + args.warmup + 60 + args.charts * args.points * 1e-4
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    done = subprocess.run(cmd, env=env, timeout=budget, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{target} run failed with exit code {done.returncode}")
    report: dict[str, Any] = json.loads(out.read_text())
    core, busy = report.get("core"), report["core_busy_percent"]
    report["own_core_busy_percent"] = busy.get(core) if core else None
    others = [v for name, v in busy.items() if name != core]
    report["other_core_busy_percent"] = others[0] if core and len(others) == 1 else None
    return report


def _plan(args: argparse.Namespace) -> list[tuple[str, bool]]:
    """(target, uses the server) in the order one repeat runs them."""
    plan: list[tuple[str, bool]] = []
    if args.feed in ("synthetic", "both"):
        plan.append(("ours", False))
    if args.baseline:
        plan.append(("baseline", False))
    if args.feed in ("server", "both"):
        plan.append(("ours", True))
    return plan


def _get(report: dict[str, Any], path: str) -> Any:
    value: Any = report
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per run label and table row: median, min, max and every value over the repeats."""
    out: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(r["label"] for r in runs):
        reports = [r for r in runs if r["label"] == label]
        rows: dict[str, Any] = {}
        for _, path, _ in ROWS:
            values = [v for r in reports if isinstance(v := _get(r, path), int | float)]
            if values:
                rows[path] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "values": values,
                }
        out[label] = rows
    return out


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"


def _cell(stat: dict[str, Any] | None) -> str:
    if stat is None:
        return "-"
    if stat["min"] == stat["max"]:
        return _fmt(stat["median"])
    return f"{_fmt(stat['median'])} [{_fmt(stat['min'])}-{_fmt(stat['max'])}]"


def format_table(summary: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per figure, one column per kind of run."""
    labels = list(summary)
    head = ["metric", "goal", *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, path, goal in ROWS:
        cells = [_cell(summary[label].get(path)) for label in labels]
        if all(c == "-" for c in cells):
            continue
        lines.append("| " + " | ".join([name, goal, *cells]) + " |")
    return "\n".join(lines)


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every planned run, ``--repeat`` times, interleaved; returns the JSON report."""
    plan = _plan(args)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeat):
            for index, (target, with_server) in enumerate(plan):
                label = f"{target}/{'server' if with_server else 'synthetic'}"
                print(f"run {repeat + 1}/{args.repeat}: {label}", file=sys.stderr, flush=True)
                server = Server(args) if with_server else None
                try:
                    out = Path(tmp) / f"{repeat}-{index}.json"
                    report = run_probe(target, args, server, out)
                finally:
                    if server is not None:
                        server.stop()
                report["repeat"] = repeat + 1
                runs.append(report)
    return {"machine": _machine(), "args": vars(args), "runs": runs, "summary": summarize(runs)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"desktop_bench: {exc}", file=sys.stderr)
        return 1
    first = report["runs"][0]
    print(
        f"\n{args.charts} charts x {args.points:,} points, {args.rate:g} ticks/s per symbol, "
        f"{args.duration:g} s measured x {args.repeat}, Qt platform {first['platform']}, "
        f"canvas {first['canvas_px'][0]}x{first['canvas_px'][1]} px"
    )
    print(format_table(report["summary"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
