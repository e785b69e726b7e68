"""Run the scenarios of docs/benchmarks.md: each server pinned to one core, ticker-bench on the other.

``python -m benchmarks.run_scenarios --scenarios 1,2,3,4,5 --repeat 2`` starts a fresh
server per run (ours, and the naive baseline for scenarios 1 and 2, alternating so both
see the same machine), runs ticker-bench against it, and writes every report plus
``summary.json`` and ``summary.md`` (goal against measured, median and spread) to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticker_bench.bench import _core_busy, read_cores
from ticker_server.market import DEFAULT_UNIVERSE

__all__ = ["SCENARIOS", "Scenario", "main"]

Report = dict[str, Any]
PY = sys.executable
TEN = ",".join(listing.symbol for listing in DEFAULT_UNIVERSE[:10])
SLOW_SERVER = ["--sndbuf", "16384", "--slow-grace", "3"]
"""Scenarios 2 and 4 share these so that only the slow clients differ between them."""


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    server: list[str]
    bench: list[str]
    naive_server: list[str] | None = None
    """Flags of the naive baseline server, for the scenarios that run it too."""
    repeat: bool = True
    """Repeat it --repeat times (scenario 3 runs once: it is the long one)."""


SCENARIOS = {
    s.key: s
    for s in (
        Scenario(
            "1",
            "Fan-out: 1,000 clients x 20 symbols x 50 ticks/s, unthrottled",
            ["--tick-rate", "50", "--max-rate", "0"],
            ["--clients", "1000", "--verify-share", "0.02", "--server-metrics"],
            naive_server=["--tick-rate", "50", "--wait-clients", "1000"],
        ),
        Scenario(
            "1d",
            "Fan-out at the defaults: 1,000 clients x 20 symbols x 5 ticks/s, no flags, no max_rate",
            ["--tick-rate", "5"],
            ["--clients", "1000", "--verify-share", "0.02", "--server-metrics"],
            naive_server=["--tick-rate", "5", "--wait-clients", "1000"],
        ),
        Scenario(
            "1e",
            "Fan-out at the defaults: 1,000 clients x 20 symbols, feed at 1,000 ticks/s (--tick-rate 60, as 1b), no max_rate",
            ["--tick-rate", "60"],
            ["--clients", "1000", "--verify-share", "0.02", "--server-metrics"],
        ),
        Scenario(
            "1b",
            "Scenario 1 with the feed at 1,000 ticks/s in its calm regime (--tick-rate 60)",
            ["--tick-rate", "60", "--max-rate", "0"],
            ["--clients", "1000", "--verify-share", "0.02", "--server-metrics"],
        ),
        Scenario(
            "2",
            "Latency: 100 clients x 10 symbols x 20 ticks/s",
            ["--symbols", TEN, "--tick-rate", "20", "--max-rate", "0", *SLOW_SERVER],
            # --server-metrics as in 4: its first scrapes grow RSS by about 1 MB (prometheus'
            # exposition warming up), which 4's per-slow-client growth must not count.
            ["--clients", "100", "--verify-share", "1", "--server-metrics"],
            naive_server=["--symbols", TEN, "--tick-rate", "20", "--wait-clients", "100"],
        ),
        Scenario(
            "2d",
            "Latency at the defaults: 100 clients x 10 symbols x 20 ticks/s, no max_rate (cap 50)",
            ["--symbols", TEN, "--tick-rate", "20", *SLOW_SERVER],
            ["--clients", "100", "--verify-share", "1", "--server-metrics"],
            naive_server=["--symbols", TEN, "--tick-rate", "20", "--wait-clients", "100"],
        ),
        Scenario(
            "3",
            "Connections: 10,000 subscribed clients (1 symbol each, max_rate 1)",
            ["--tick-rate", "5", "--max-connections", "10000"],
            ["--clients", "10000", "--per-client", "1", "--spread", "--max-rate", "1",
             "--verify-share", "0.01", "--connect-concurrency", "200", "--idle", "2"],
            repeat=False,
        ),
        Scenario(
            "4",
            "Slow consumers: scenario 2 with 10% of the clients not reading for 9 s",
            ["--symbols", TEN, "--tick-rate", "20", "--max-rate", "0", *SLOW_SERVER],
            ["--clients", "100", "--verify-share", "1", "--slow-share", "0.1",
             "--slow-rcvbuf", "4096", "--slow-for", "9", "--server-metrics", "--drain", "6"],
        ),
        Scenario(
            "5",
            "Throttled: 500 clients x 20 symbols at 200 ticks/s, max_rate 2",
            ["--tick-rate", "200"],
            ["--clients", "500", "--max-rate", "2", "--verify-share", "1", "--idle", "3",
             "--server-metrics"],
        ),
    )
}  # fmt: skip
KINDS = {
    "ours": ["-m", "ticker_server"],
    "uvloop": ["-m", "benchmarks.with_uvloop", "ticker_server"],
    "naive": ["-m", "benchmarks.naive_server"],
}
"""How each kind of server starts: ours, ours under uvloop, and the naive baseline."""


def wait_quiet(limit: float, busy: float = 30.0) -> float:
    """Wait up to ``limit`` s for 2 s in which no core is more than ``busy``% used; return the
    busiest core's share over the last 2 s (other engineers' jobs share this machine)."""
    deadline = time.time() + limit
    while True:
        before = read_cores()
        time.sleep(2.0)
        worst = max(_core_busy(before, read_cores()).values(), default=0.0)
        if worst <= busy or time.time() >= deadline:
            return worst


def _pin(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu is not None and shutil.which("taskset") else []


def _fingerprint() -> str:
    """A short hash of the server's sources, so a table says which code it measured."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent / "ticker_server"
    for path in sorted(root.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def start_server(
    cmd: list[str], log: Path, timeout: float = 20.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server that logs ``serving ws://...``; return it and its URL."""
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + timeout
    while time.time() < deadline:
        match = re.search(r"serving (ws://[\d.]+:\d+)", log.read_text(errors="replace"))
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError(f"server did not start: {' '.join(cmd)}; see {log}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_one(scenario: Scenario, kind: str, run: int, args: argparse.Namespace, out: Path) -> Report:
    """One server, one ticker-bench run against it; returns the report."""
    label = f"s{scenario.key}-{kind}-r{run}"
    flags = scenario.naive_server if kind == "naive" else scenario.server
    server = [PY, *KINDS[kind], "--port", "0", "--seed", "1", *(flags or [])]
    bench = [PY, "-m", "ticker_bench", "--label", label, "--duration", str(args.duration)]
    bench += [f for f in scenario.bench if kind != "naive" or f != "--server-metrics"]
    load_before = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
    proc, url = start_server(_pin(args.server_cpu) + server, out / f"{label}.server.log")
    report_path = out / f"{label}.json"
    bench += ["--url", url, "--pid", str(proc.pid), "--json", str(report_path)]
    started = time.time()
    try:
        with open(out / f"{label}.bench.log", "wb") as log:
            subprocess.run(
                _pin(args.client_cpu) + bench,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=args.duration + 240,
                check=False,
            )
    finally:
        stop_server(proc)
    if not report_path.exists():
        raise RuntimeError(f"{label}: no report; see {out / (label + '.bench.log')}")
    report: Report = json.loads(report_path.read_text())
    report["busiest_core_before_percent"] = load_before
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  {label}: {time.time() - started:.0f} s  {_brief(report)}", flush=True)
    return report


def _brief(r: Report) -> str:
    lat, t, srv = r["latency_ms"], r["throughput"], r["server"]
    text = (
        f"ticks/s {t['ticks_per_s']:,.0f}  p50 {lat.get('p50')} p99 {lat.get('p99')} ms  "
        f"server cpu {srv.get('cpu_percent')}%  tool sat {r['tool']['saturated']}"
    )
    if r["clients"]["requested"] >= 10_000:
        text += f"  connected {r['clients']['connected']}  KiB/conn {srv.get('rss_per_client_kib')}"
    return text


# -- the summary -------------------------------------------------------------------------


def _stat(values: Sequence[float | None]) -> dict[str, Any] | None:
    data = [v for v in values if v is not None]
    if not data:
        return None
    return {"median": statistics.median(data), "min": min(data), "max": max(data), "n": len(data)}


def _pick(reports: list[Report], getter: Callable[[Report], Any]) -> dict[str, Any] | None:
    values: list[float | None] = []
    for report in reports:
        try:
            values.append(getter(report))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            values.append(None)
    return _stat(values)


@dataclass(frozen=True)
class Row:
    """One line of the summary: a figure read from each report, and its goal."""

    name: str
    goal: str
    value: Callable[[Report], Any]
    check: Callable[[float], bool] | None = None


def at(path: str) -> Callable[[Report], Any]:
    """A getter for a dotted path into a report, e.g. ``at("latency_ms.p99")``."""

    def get(report: Report) -> Any:
        value: Any = report
        for key in path.split("."):
            value = value[key]
        return value

    return get


def _seq_errors(r: Report) -> int:
    seq = r["seq"]
    return int(seq["unexplained"] + seq["overcounted"] + seq["reordered"])


def _generated(r: Report) -> float:
    """The feed's generated ticks per second over the window (from the server's /metrics)."""
    deltas = r["server_metrics"]["window_deltas"]
    return float(deltas["ticker_ticks_generated_total"]) / float(r["window_s"])


def _rows(key: str, s2: dict[str, float]) -> list[Row]:
    """The summary rows of one scenario; ``s2`` holds scenario 2's p99 and peak RSS."""
    s2_p99, s2_peak = s2.get("p99"), s2.get("peak")

    def slow_growth(r: Report) -> float | None:
        # Peak against peak: the same server, flags, seed and clients, only the slow ones
        # differ, and idle RSS is the same within 0.1 MB. Growth since "all subscribed" is not
        # comparable: when /metrics first warms up (about 1 MB) moves that point around.
        if s2_peak is None:
            return None
        return float(r["server"]["rss_max_kib"] - s2_peak) / int(r["clients"]["slow"])

    per_tick = Row("server CPU us per delivered tick", "-", at("server.cpu_us_per_tick"))
    fanout = [
        Row(
            "ticks delivered /s",
            ">= 1,000,000",
            at("throughput.ticks_per_s"),
            lambda v: v >= 1_000_000,
        ),
        Row("latency p99 ms", "<= 50", at("latency_ms.p99"), lambda v: v <= 50),
        Row("latency p50 ms", "-", at("latency_ms.p50")),
        Row("feed: generated ticks /s", "1,000", _generated),
        Row(
            "delivered / (clients x generated)",
            "1",
            lambda r: r["throughput"]["ticks_per_s"] / r["clients"]["connected"] / _generated(r),
        ),
        Row("frames /s", "-", at("throughput.frames_per_s")),
        per_tick,
    ]
    covered = Row(
        "covered / (clients x generated)",
        "1",
        lambda r: (
            r["throughput"]["covered_ticks_per_s"] / r["clients"]["connected"] / _generated(r)
        ),
        lambda v: v >= 0.99,
    )
    defaults = [
        covered,
        Row("generated ticks covered /s", "-", at("throughput.covered_ticks_per_s")),
        Row("updates delivered /s", "-", at("throughput.ticks_per_s")),
        Row("latency p99 ms", "<= 20", at("latency_ms.p99"), lambda v: v <= 20),
        Row("latency p50 ms", "-", at("latency_ms.p50")),
        Row("feed: generated ticks /s", "100", _generated),
        Row(
            "server CPU us per delivered update",
            "<= 3",
            at("server.cpu_us_per_tick"),
            lambda v: v <= 3,
        ),
        Row("frames /s", "-", at("throughput.frames_per_s")),
    ]
    defaults_fast = [
        covered,
        Row(
            "generated ticks covered /s",
            ">= 1,000,000",
            at("throughput.covered_ticks_per_s"),
            lambda v: v >= 1_000_000,
        ),
        Row("updates delivered /s", "-", at("throughput.ticks_per_s")),
        Row("latency p99 ms", "<= 50", at("latency_ms.p99"), lambda v: v <= 50),
        Row("latency p50 ms", "-", at("latency_ms.p50")),
        Row("feed: generated ticks /s", "1,000", _generated),
        per_tick,
    ]
    table = {
        "1": fanout,
        "1b": fanout,
        "1d": defaults,
        "1e": defaults_fast,
        "2d": [
            Row("latency p50 ms", "<= 1", at("latency_ms.p50"), lambda v: v <= 1),
            Row("latency p99 ms", "<= 23 (window + 3)", at("latency_ms.p99"), lambda v: v <= 23),
            Row("latency p99.9 ms", "-", lambda r: r["latency_ms"]["p99.9"]),
            Row("ticks delivered /s", "-", at("throughput.ticks_per_s")),
            Row("generated ticks covered /s", "-", at("throughput.covered_ticks_per_s")),
            per_tick,
        ],
        "2": [
            Row("latency p50 ms", "<= 0.5", at("latency_ms.p50"), lambda v: v <= 0.5),
            Row("latency p99 ms", "<= 1.5", at("latency_ms.p99"), lambda v: v <= 1.5),
            Row("latency p99.9 ms", "-", lambda r: r["latency_ms"]["p99.9"]),
            Row("ticks delivered /s", "-", at("throughput.ticks_per_s")),
        ],
        "3": [
            Row("clients connected", "10,000", at("clients.connected"), lambda v: v >= 10_000),
            Row("server RSS KiB per connection", "<= 10", at("server.rss_per_client_kib"),
                lambda v: v <= 10),
            Row("connection failures", "0", lambda r: sum(r["clients"]["failures"].values()),
                lambda v: v == 0),
        ],
        "4": [
            Row("others' latency p99 ms", "<= 1.1 x scenario 2", at("latency_ms.p99"),
                (lambda v: v <= s2_p99 * 1.1) if s2_p99 else None),
            # All of the window's growth over the slow clients, including what scenario 2
            # grows without any (3-4 MB): shown, but the row below is the comparison.
            Row("server RSS growth since subscribed / slow clients, KiB", "-",
                at("server.rss_growth_per_slow_client_kib")),
            Row("peak RSS above scenario 2's, KiB per slow client", "<= 64", slow_growth,
                lambda v: v <= 64),
            Row("slow clients the server closed with 1013 (of 10)", "10",
                at("server_metrics.slow_closes_total"), lambda v: v >= 10),
            Row("slow clients that read the 1013 when they read again (of 10)", "10",
                lambda r: r["closes"]["slow"].get("1013", 0), lambda v: v >= 10),
            Row("first 1013, s after they stopped reading (grace 3)", "> 3",
                at("server_metrics.first_slow_close_after_ready_s"), lambda v: v > 3),
            Row("others closed during run", "0", lambda r: sum(r["closes"]["during_run"].values()),
                lambda v: v == 0),
        ],
        "5": [
            Row("max updates/s per symbol per client", "-",
                at("rate.max_updates_per_s_per_symbol")),
            # Windows are clock-aligned, so a run of d seconds spans up to 2d + 1 of them.
            Row("max updates per symbol beyond 2/s x run (window edges)", "<= 1",
                lambda r: round(r["rate"]["max_updates_per_s_per_symbol"] * r["window_s"]
                                - 2 * r["window_s"], 2),
                lambda v: v <= 1),
            Row("freshness p99 ms", "<= 550", at("freshness_ms.p99"), lambda v: v <= 550),
            Row("ticks delivered /s", "-", at("throughput.ticks_per_s")),
            Row("server idle CPU % (feed only)", "-", at("server.idle_cpu_percent")),
            Row("server CPU us per delivered update", "<= 1.5", at("server.cpu_us_per_tick"),
                lambda v: v <= 1.5),
        ],
    }  # fmt: skip
    return [
        *table[key],
        Row("seq gaps not explained by merged", "0", _seq_errors, lambda v: v == 0),
        Row("server CPU %", "-", at("server.cpu_percent")),
        Row("busy % of the server's core (all processes)", "-", at("core_busy_percent.cpu0")),
        Row("tool CPU % (max worker)", "< 90", lambda r: max(r["tool"]["cpu_percent_per_worker"]),
            lambda v: v < 90),
    ]  # fmt: skip


def _fmt(stat: dict[str, Any] | None) -> str:
    if stat is None:
        return "-"

    def one(v: float) -> str:
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"

    if stat["n"] == 1 or stat["min"] == stat["max"]:
        return one(stat["median"])
    return f"{one(stat['median'])} [{one(stat['min'])}-{one(stat['max'])}]"


def summarize(results: dict[str, list[Report]], meta: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The summary JSON and its markdown table: medians with [min-max] over repeats."""
    s2: dict[str, float] = {}
    for key, getter in (("p99", at("latency_ms.p99")), ("peak", at("server.rss_max_kib"))):
        stat = _pick(results.get("s2-ours", []), getter)
        if stat:
            s2[key] = stat["median"]
    uv = any(k.endswith("-uvloop") for k in results)
    summary: dict[str, Any] = {"meta": meta, "scenarios": {}}
    lines = [
        f"Server sources {meta['fingerprint']}, {meta['date']}, {meta['duration']} s measured "
        f"per run, server on core {meta['server_cpu']}, clients on core {meta['client_cpu']}.",
        "",
        "| # | metric | goal | ours: median [min-max] |"
        + (" ours + uvloop |" if uv else "")
        + " naive | ours/naive | met |",
        "|---|---|---|---|" + ("---|" if uv else "") + "---|---|---|",
    ]
    for key, scenario in SCENARIOS.items():
        ours = results.get(f"s{key}-ours", [])
        if not ours:
            continue
        naive = results.get(f"s{key}-naive", [])
        uvloop = results.get(f"s{key}-uvloop", [])
        rows = []
        for row in _rows(key, s2):
            o = _pick(ours, row.value)
            u = _pick(uvloop, row.value) if uvloop else None
            n = _pick(naive, row.value) if naive else None
            ratio = (o["median"] / n["median"]) if o and n and n["median"] else None
            met = "-"
            if row.check is not None and o is not None:
                met = "yes" if row.check(o["median"]) else "NO"
            rows.append(
                {"metric": row.name, "goal": row.goal, "ours": o, "uvloop": u, "naive": n}
                | {"ratio": ratio, "met": met}
            )
            lines.append(
                f"| {key} | {row.name} | {row.goal} | {_fmt(o)} |"
                + (f" {_fmt(u)} |" if uv else "")
                + f" {_fmt(n)} | {'-' if ratio is None else f'{ratio:.2f}'} | {met} |"
            )
        summary["scenarios"][key] = {"title": scenario.title, "rows": rows}
    return summary, "\n".join(lines) + "\n"


def _resummarize(out: Path) -> int:
    """Rebuild summary.json and summary.md from the reports a run left in ``out``."""
    results: dict[str, list[Report]] = {}
    for path in sorted(out.glob("s*-r*.json")):
        match = re.fullmatch(r"(s\w+-\w+)-r\d+\.json", path.name)
        if match:
            results.setdefault(match.group(1), []).append(json.loads(path.read_text()))
    meta = json.loads((out / "summary.json").read_text())["meta"]
    summary, table = summarize(results, meta)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(table)
    print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_scenarios", description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="1,1b,2,3,4,5", help="comma list (1,1b,2,3,4,5)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per scenario and server (2)")
    parser.add_argument("--duration", type=float, default=15.0, help="measured s per run (15)")
    parser.add_argument("--out", default="bench-results", help="folder for reports")
    parser.add_argument("--server-cpu", default="0", help="core for the server (0)")
    parser.add_argument("--client-cpu", default="1", help="core(s) for ticker-bench (1)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline runs")
    parser.add_argument(
        "--uvloop", action="store_true", help="also run our server under uvloop (if installed)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each run, wait up to this many s for the machine's cores to go quiet",
    )
    parser.add_argument(
        "--summarize-only", action="store_true", help="rebuild the summary from --out's reports"
    )
    args = parser.parse_args(argv)
    if args.summarize_only:
        return _resummarize(Path(args.out))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # servers and workers inherit it
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "fingerprint": _fingerprint(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "duration": args.duration,
        "repeat": args.repeat,
        "server_cpu": args.server_cpu,
        "client_cpu": args.client_cpu,
        "cpus": os.cpu_count(),
        "nofile": hard,
    }
    results: dict[str, list[Report]] = {}
    table = ""
    for key in args.scenarios.split(","):
        scenario = SCENARIOS[key.strip()]
        print(f"scenario {scenario.key}: {scenario.title}", flush=True)
        kinds = ["ours"] + (["uvloop"] if args.uvloop else [])
        if scenario.naive_server is not None and not args.no_naive:
            kinds.append("naive")
        for run in range(1, (args.repeat if scenario.repeat else 1) + 1):
            for kind in kinds:
                try:
                    report = run_one(scenario, kind, run, args, out)
                except Exception as exc:  # one broken run must not lose the others
                    print(f"  s{scenario.key}-{kind}-r{run}: FAILED: {exc}", flush=True)
                    continue
                results.setdefault(f"s{scenario.key}-{kind}", []).append(report)
        summary, table = summarize(results, meta)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out / "summary.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
