"""ticker-bench, the naive baseline and the scenario summary on tiny settings.

No speed is asserted (the lead benchmarks on a quiet machine); what is asserted is the
accounting: the report's figures agree with each other, with the server's own counters
and with its /proc, and latencies stay within bounds scaled by the timing unit.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.run_scenarios import summarize

from ..servers import ServerProcess, SpawnServer
from ..timing import MS, TIMEOUT

PY = sys.executable
SLOW_CAPACITY = 2000
"""Ticks a slow client can be sent before its socket is full (8 KiB send, 4 KiB receive buffers)."""


def ms(n: float) -> float:
    """``n`` milliseconds scaled by the timing unit, in the report's unit (ms)."""
    return n * MS * 1e3


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, read here rather than trusted from the report."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """VmRSS from /proc/PID/status (the report reads statm, in pages)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


async def server_counters(server: ServerProcess) -> dict[str, float]:
    """The server's Prometheus counters from its /metrics, as ``name value`` lines."""
    host, _, port = server.url.removeprefix("ws://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    body = (await asyncio.wait_for(reader.read(), TIMEOUT)).decode()
    writer.close()
    await writer.wait_closed()
    assert body.startswith("HTTP/1.1 200"), body[:200]
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in body.splitlines())
        if name.endswith("_total")
    }


@pytest.fixture
async def ticker_server(spawn_server: SpawnServer) -> ServerProcess:
    return await spawn_server(
        "--port", "0", "--tick-rate", "100", "--max-rate", "0", "--seed", "1",
        "--slow-grace", "1", "--sndbuf", "8192",
    )  # fmt: skip


@pytest.fixture
async def naive_server(spawn_server: SpawnServer) -> ServerProcess:
    return await spawn_server(
        "--port", "0", "--tick-rate", "20", "--seed", "1", "--wait-clients", "3",
        module="benchmarks.naive_server",
    )  # fmt: skip


async def _bench(tmp_path: Path, server: ServerProcess, *extra: str) -> dict[str, Any]:
    out = tmp_path / "report.json"
    bench = await asyncio.create_subprocess_exec(
        PY, "-m", "ticker_bench", "--url", server.url, "--pid", str(server.pid),
        "--json", str(out), "--duration", "1.5", "--warmup", "0.5", "--idle", "0.2",
        "--drain", "2", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        stdout, _ = await asyncio.wait_for(bench.communicate(), 90_000 * MS)
    finally:
        if bench.returncode is None:
            bench.kill()
            await bench.wait()
    text = stdout.decode(errors="replace")
    assert bench.returncode == 0, text
    assert "ticks delivered /s" in text
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def assert_accounting(report: dict[str, Any], normal: int) -> None:
    """The merged figures agree: every normal client got the same stream, and each of its
    counted ticks had its latency sampled (one sample per tick at these rates)."""
    window, tput, fair = report["window_s"], report["throughput"], report["fairness_ticks_per_s"]
    ticks = tput["ticks_per_s"] * window
    # Unthrottled and subscribed alike, normal clients differ only by where each worker
    # marked the window: a few ticks, or what arrives in a scheduling delay.
    assert fair["max"] - fair["min"] <= fair["median"] * 200 * MS / window + 5, fair
    # A slow client stops reading before the window, so the total is the normal clients'.
    assert normal * fair["min"] - 0.5 <= tput["ticks_per_s"] <= normal * fair["max"] + 0.5
    lat = report["latency_ms"]
    assert abs(lat["samples"] - ticks) <= 2 + tput["ticks_per_s"] * 0.001, (lat, tput, window)
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert lat["p50"] <= ms(100) and lat["p99"] <= ms(1000), lat
    assert tput["frames_per_s"] <= tput["ticks_per_s"] <= tput["covered_ticks_per_s"]
    assert tput["ticks_per_frame"] == pytest.approx(
        tput["ticks_per_s"] / tput["frames_per_s"], abs=0.02
    )
    fresh = report["freshness_ms"]
    # Sampled every 0.05-0.15 s within the window, one figure per symbol a verified client holds.
    most = report["rate"]["symbols_checked"] * (window / 0.05 + 1)
    assert 1 <= fresh["samples"] <= most and fresh["p50"] <= ms(1000), fresh
    assert report["seq"]["ok"], report["seq"]


async def test_bench_against_ticker_server(tmp_path: Path, ticker_server: ServerProcess) -> None:
    """ticker-bench's counts, latencies, CPU and RSS agree with each other and with the server's own counters and /proc."""
    pid = ticker_server.pid
    cpu_before = cpu_seconds(pid)
    report = await _bench(
        tmp_path, ticker_server, "--clients", "5", "--workers", "2", "--slow-share", "0.2",
        "--verify-share", "0.4", "--server-metrics",
    )  # fmt: skip
    cpu_used, rss_now = cpu_seconds(pid) - cpu_before, rss_kib(pid)
    assert report["clients"]["connected"] == 5
    assert report["clients"]["slow"] == 1 and report["clients"]["verified"] == 2
    assert report["clients"]["failures"] == {}
    assert_accounting(report, normal=4)
    window, fair = report["window_s"], report["fairness_ticks_per_s"]
    # The server's counters over its sampled window, which holds the clients' window (and may
    # begin before they subscribed): what the clients counted was delivered in it, and no
    # normal client got more than every generated tick; the slow one only until it was full.
    deltas = report["server_metrics"]["window_deltas"]
    generated, delivered = (
        deltas["ticker_ticks_generated_total"],
        deltas["ticker_ticks_delivered_total"],
    )
    counted = report["throughput"]["ticks_per_s"] * window
    slack = 4 * fair["median"] * 100 * MS
    assert counted - slack <= delivered <= 4 * generated + slack + SLOW_CAPACITY, (counted, deltas)
    assert fair["median"] * window <= generated + slack, (fair, deltas)
    # One slow consumer, closed with 1013, as both the clients and the server count it (read
    # here after the run: the bench's last sample may precede a close it then received).
    assert report["closes"]["slow"] == {"1013": 1}
    assert (await server_counters(ticker_server))["ticker_slow_consumer_closes_total"] == 1
    server = report["server"]
    # The server's CPU over the window fits in what it used over the whole run, read here.
    assert 0 < server["cpu_percent"] / 100 * window <= cpu_used + 0.02, (server, cpu_used)
    # Per tick, in microseconds: its CPU is sampled between the parent's polls (0.25 s apart),
    # the ticks between the workers' marks, so the two windows differ by up to a poll each end.
    ticks = report["throughput"]["ticks_per_s"] * window
    per_tick = server["cpu_percent"] / 100 * window / ticks * 1e6
    rel = 600 * MS / window + 0.02
    assert server["cpu_us_per_tick"] == pytest.approx(per_tick, rel=rel), server
    # RSS in KiB (not pages, not another process): close to what /proc/PID/status says now.
    assert 0.5 * rss_now <= server["rss_ready_kib"] <= 1.5 * rss_now, (server, rss_now)
    assert len(report["tool"]["cpu_percent_per_worker"]) == 2


async def test_bench_against_naive_server(tmp_path: Path, naive_server: ServerProcess) -> None:
    """The naive baseline speaks enough protocol v1 for ticker-bench, on websockets' plain path too, and its report adds up."""
    for extra in ([], ["--plain"]):
        report = await _bench(tmp_path, naive_server, "--clients", "3", "--per-client", "2", *extra)
        assert report["clients"]["connected"] == 3
        assert report["clients"]["fast_path"] == (0 if extra else 3)
        assert_accounting(report, normal=3)
        assert report["fairness_ticks_per_s"]["min"] > 0, "every client got ticks"
        # The baseline wrote every summary figure the scenario table reads.
        _, table = summarize({"s2-ours": [report], "s2-naive": [report]}, _META)
        assert "| 2 | latency p50 ms | <= 0.5 |" in table


_META = {
    "fingerprint": "test",
    "date": "now",
    "duration": 1.5,
    "server_cpu": "0",
    "client_cpu": "1",
}
