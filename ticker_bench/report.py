"""Merging the workers' results into one ticker-bench report, and printing it (pure)."""

from __future__ import annotations

import statistics
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SATURATION", "ServerSample", "build_report", "format_table", "percentiles"]

SATURATION = 0.9
"""Share of a core above which a worker process (or the tool's cores) counts as saturated."""
QUANTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


@dataclass(frozen=True)
class ServerSample:
    """The server process at one moment, from /proc."""

    time: float
    cpu: float
    """utime + stime in seconds."""
    rss_kib: int


@dataclass
class ServerTrace:
    """The named moments of a run, for the server's CPU and RSS figures."""

    idle_start: ServerSample | None = None
    idle_end: ServerSample | None = None
    ready: ServerSample | None = None
    start: ServerSample | None = None
    end: ServerSample | None = None
    samples: list[ServerSample] = field(default_factory=list)


def percentiles(
    values: Sequence[float] | np.ndarray[Any, Any], scale: float = 1e3
) -> dict[str, Any]:
    """p50/p90/p99/p99.9, mean and max of ``values`` times ``scale`` (seconds to ms by default)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {"samples": 0}
    out: dict[str, Any] = {"samples": int(data.size)}
    for name, q in QUANTILES:
        out[name] = round(float(np.percentile(data, q)) * scale, 3)
    out["mean"] = round(float(data.mean()) * scale, 3)
    out["max"] = round(float(data.max()) * scale, 3)
    return out


def _floats(blobs: list[bytes]) -> np.ndarray[Any, Any]:
    joined = array("d")
    for blob in blobs:
        joined.frombytes(blob)
    return np.frombuffer(joined, dtype=np.float64) if joined else np.zeros(0)


def _server_section(trace: ServerTrace, ticks: int, connected: int, slow: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if trace.idle_start and trace.idle_end and trace.idle_end.time > trace.idle_start.time:
        out["idle_cpu_percent"] = round(
            100
            * (trace.idle_end.cpu - trace.idle_start.cpu)
            / (trace.idle_end.time - trace.idle_start.time),
            1,
        )
        out["rss_idle_kib"] = trace.idle_end.rss_kib
    if trace.start and trace.end and trace.end.time > trace.start.time:
        cpu = trace.end.cpu - trace.start.cpu
        wall = trace.end.time - trace.start.time
        out["cpu_percent"] = round(100 * cpu / wall, 1)
        if ticks:
            out["cpu_us_per_tick"] = round(cpu / ticks * 1e6, 3)
        window = [s.rss_kib for s in trace.samples if trace.start.time <= s.time <= trace.end.time]
        out["rss_start_kib"] = trace.start.rss_kib
        out["rss_end_kib"] = trace.end.rss_kib
        out["rss_max_kib"] = max([*window, trace.end.rss_kib])
        out["rss_growth_kib"] = out["rss_max_kib"] - trace.start.rss_kib
        if slow:
            ready = trace.ready.rss_kib if trace.ready else trace.start.rss_kib
            out["rss_growth_per_slow_client_kib"] = round((out["rss_max_kib"] - ready) / slow, 2)
    if trace.ready:
        out["rss_ready_kib"] = trace.ready.rss_kib
        if "rss_idle_kib" in out and connected:
            out["rss_per_client_kib"] = round(
                (trace.ready.rss_kib - out["rss_idle_kib"]) / connected, 2
            )
    return out


def build_report(
    config: dict[str, Any],
    results: list[dict[str, Any]],
    trace: ServerTrace,
    cores: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the workers' results into the report that the table and --json show."""
    windows = [r for r in results if r.get("start") and r.get("end")]
    duration = (
        statistics.fmean(r["end"]["time"] - r["start"]["time"] for r in windows) if windows else 0.0
    )

    def delta(key: str) -> int:
        return sum(r["end"][key] - r["start"][key] for r in windows)

    ticks, frames, nbytes, covered = (
        delta("ticks"),
        delta("frames"),
        delta("bytes"),
        delta("covered"),
    )
    rate = (lambda v: round(v / duration, 1)) if duration > 0 else (lambda v: 0.0)
    per_client = [c for r in results for c in r["per_client"]]
    normal = [c["delivered"] / duration for c in per_client if not c["slow"]] if duration else []
    slow_count = sum(1 for c in per_client if c["slow"])
    connected = sum(r["connected"] for r in results)
    counts = [n for r in results for n in r["symbol_counts"]]
    verify = {"clients": 0, "merged_updates": 0, "unexplained": 0, "overcounted": 0, "reordered": 0}
    examples: list[str] = []
    for r in results:
        for key in verify:
            verify[key] += r["verify"][key]
        examples += r["verify"]["examples"]
    failures: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    slow_closes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for r in results:
        failures.update(r["failures"])
        closes.update(r["closes"])
        slow_closes.update(r["slow_closes"])
        errors.update(r["errors"])
    busy = [
        (r["end"]["cpu"] - r["start"]["cpu"]) / max(r["end"]["time"] - r["start"]["time"], 1e-9)
        for r in windows
    ]
    saturated = any(b >= SATURATION for b in busy) or sum(busy) >= SATURATION * cores
    slow_times = sorted(t for r in results for t in r["slow_close_times"])
    start_time = min((r["start"]["time"] for r in windows), default=0.0)
    report: dict[str, Any] = {
        "config": config,
        "window_s": round(duration, 3),
        "clients": {
            "requested": config.get("clients"),
            "connected": connected,
            "slow": slow_count,
            "verified": verify["clients"],
            "fast_path": sum(r["fast"] for r in results),
            "failures": dict(failures),
        },
        "throughput": {
            "ticks_per_s": rate(ticks),
            "covered_ticks_per_s": rate(ticks + covered),
            "frames_per_s": rate(frames),
            "bytes_per_s": rate(nbytes),
            "ticks_per_frame": round(ticks / frames, 2) if frames else 0.0,
        },
        "latency_ms": percentiles(_floats([r["latency"] for r in results])),
        "freshness_ms": percentiles(_floats([r["freshness"] for r in results])),
        "fairness_ticks_per_s": {
            "min": round(min(normal), 1) if normal else 0.0,
            "median": round(statistics.median(normal), 1) if normal else 0.0,
            "max": round(max(normal), 1) if normal else 0.0,
        },
        "seq": {
            **verify,
            "examples": examples[:5],
            "ok": not (verify["unexplained"] or verify["overcounted"] or verify["reordered"]),
        },
        "rate": {
            "max_rate_asked": config.get("max_rate"),
            "symbols_checked": len(counts),
            "max_updates_per_s_per_symbol": round(max(counts) / duration, 3)
            if counts and duration
            else None,
            "max_updates_in_one_second": max((r["per_second_max"] for r in results), default=0)
            or None,
        },
        "closes": {
            "during_run": dict(closes),
            "slow": dict(slow_closes),
            "slow_closed_after_s": [
                round(t - start_time, 2) for t in slow_times[:1] + slow_times[-1:]
            ]
            if slow_times and start_time
            else [],
        },
        "errors": dict(errors),
        "server": _server_section(trace, ticks, connected, slow_count),
        "tool": {
            "workers": len(results),
            "cores": cores,
            "cpu_percent_per_worker": [round(100 * b, 1) for b in busy],
            "saturated": saturated,
        },
    }
    if extra:
        report.update(extra)
    return report


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "none"
    return str(value)


def format_table(report: dict[str, Any]) -> str:
    """The human summary: one aligned line per figure."""
    t, lat, fresh = report["throughput"], report["latency_ms"], report["freshness_ms"]
    c, server, tool = report["clients"], report["server"], report["tool"]
    rows: list[tuple[str, Any]] = [
        ("window (s)", report["window_s"]),
        ("clients connected / asked", f"{c['connected']:,} / {c['requested']:,}"),
        ("slow / verified clients", f"{c['slow']} / {c['verified']}"),
        ("connection failures", c["failures"]),
        ("ticks delivered /s", t["ticks_per_s"]),
        ("generated ticks covered /s", t["covered_ticks_per_s"]),
        ("frames /s", t["frames_per_s"]),
        ("MB /s", t["bytes_per_s"] / 1e6),
        ("ticks per frame", t["ticks_per_frame"]),
        (
            "latency ms p50/p90/p99/p99.9/max",
            "/".join(_fmt(lat.get(k)) for k in ("p50", "p90", "p99", "p99.9", "max")),
        ),
        ("latency samples", lat.get("samples", 0)),
        (
            "freshness ms p50/p99/max",
            "/".join(_fmt(fresh.get(k)) for k in ("p50", "p99", "max")),
        ),
        ("per-client ticks/s min/median/max", report["fairness_ticks_per_s"]),
        (
            "seq: merged / unexplained gaps / overcount / reordered",
            "{merged_updates} / {unexplained} / {overcounted} / {reordered}".format(
                **report["seq"]
            ),
        ),
        ("max updates/s per symbol per client", report["rate"]["max_updates_per_s_per_symbol"]),
        (
            "close codes (others / slow)",
            f"{_fmt(report['closes']['during_run'])} / {_fmt(report['closes']['slow'])}",
        ),
        ("server errors received", report["errors"]),
        (
            "server CPU % (idle)",
            f"{_fmt(server.get('cpu_percent'))} ({_fmt(server.get('idle_cpu_percent'))})",
        ),
        ("server CPU us per delivered tick", server.get("cpu_us_per_tick")),
        (
            "server RSS KiB idle/ready/max",
            "/".join(_fmt(server.get(k)) for k in ("rss_idle_kib", "rss_ready_kib", "rss_max_kib")),
        ),
        ("server RSS KiB per client", server.get("rss_per_client_kib")),
        ("tool CPU % per worker", tool["cpu_percent_per_worker"]),
        ("machine: busy % per core (all processes)", report.get("core_busy_percent", {})),
    ]
    if server.get("rss_growth_per_slow_client_kib") is not None:
        rows.append(
            ("server RSS growth KiB per slow client", server["rss_growth_per_slow_client_kib"])
        )
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {_fmt(value)}" for name, value in rows]
    if tool["saturated"]:
        lines.append(
            "WARNING: the load generator saturated its CPU; figures are bounded by the tool"
        )
    return "\n".join(lines)
