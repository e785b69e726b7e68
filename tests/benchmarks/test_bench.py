"""ticker-bench, the naive baseline and the scenario summary run on tiny settings (no timings checked)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.run_scenarios import summarize

PY = sys.executable


def _serve(*cmd: str) -> Iterator[tuple[int, str]]:
    proc = subprocess.Popen([PY, "-m", *cmd, "--port", "0"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    drain: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            match = re.search(r"serving (ws://[\d.]+:\d+)", line)
            if match:
                break
            assert line, f"{cmd[0]} exited before serving"
        else:
            pytest.fail(f"{cmd[0]} did not start")
        # Keep reading stderr so a chatty server never blocks on a full pipe.
        drain = subprocess.Popen(["cat"], stdin=proc.stderr, stdout=subprocess.DEVNULL)
        yield proc.pid, match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if drain is not None:
            drain.wait(timeout=5)


@pytest.fixture
def ticker_server() -> Iterator[tuple[int, str]]:
    yield from _serve(
        "ticker_server", "--tick-rate", "100", "--max-rate", "0", "--seed", "1",
        "--slow-grace", "1", "--sndbuf", "8192", "--backfill", "0",
    )  # fmt: skip


@pytest.fixture
def naive_server() -> Iterator[tuple[int, str]]:
    yield from _serve(
        "benchmarks.naive_server", "--tick-rate", "20", "--seed", "1", "--wait-clients", "3"
    )


def _bench(tmp_path: Path, url: str, pid: int, *extra: str) -> dict[str, Any]:
    out = tmp_path / "report.json"
    done = subprocess.run(
        [
            PY, "-m", "ticker_bench", "--url", url, "--pid", str(pid), "--json", str(out),
            "--duration", "1.5", "--warmup", "0.5", "--idle", "0.2", "--drain", "2", *extra,
        ],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ticks delivered /s" in done.stdout
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_bench_against_ticker_server(tmp_path: Path, ticker_server: tuple[int, str]) -> None:
    """ticker-bench connects, counts, samples latency, checks seq and reads the server's /proc."""
    pid, url = ticker_server
    report = _bench(
        tmp_path, url, pid, "--clients", "5", "--workers", "2", "--slow-share", "0.2",
        "--verify-share", "0.4", "--server-metrics",
    )  # fmt: skip
    assert report["clients"]["connected"] == 5
    assert report["clients"]["slow"] == 1 and report["clients"]["verified"] == 2
    assert report["clients"]["failures"] == {}
    assert report["throughput"]["ticks_per_s"] > 0
    assert report["throughput"]["frames_per_s"] <= report["throughput"]["ticks_per_s"]
    assert report["throughput"]["covered_ticks_per_s"] >= report["throughput"]["ticks_per_s"]
    lat = report["latency_ms"]
    assert lat["samples"] > 0 and 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert report["freshness_ms"]["samples"] > 0
    fair = report["fairness_ticks_per_s"]
    assert 0 < fair["min"] <= fair["median"] <= fair["max"]
    assert report["seq"]["ok"], report["seq"]
    assert report["server"]["cpu_percent"] > 0 and report["server"]["rss_ready_kib"] > 0
    assert sum(report["closes"]["slow"].values()) == 1
    assert len(report["tool"]["cpu_percent_per_worker"]) == 2
    assert "window_deltas" in report["server_metrics"]


def test_bench_against_naive_server(tmp_path: Path, naive_server: tuple[int, str]) -> None:
    """The naive baseline speaks enough protocol v1 for ticker-bench, on websockets' plain path too."""
    pid, url = naive_server
    for extra in ([], ["--plain"]):
        report = _bench(tmp_path, url, pid, "--clients", "3", "--per-client", "2", *extra)
        assert report["clients"]["connected"] == 3
        assert report["throughput"]["ticks_per_s"] > 0
        assert report["seq"]["ok"], report["seq"]
        assert report["clients"]["fast_path"] == (0 if extra else 3)
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
