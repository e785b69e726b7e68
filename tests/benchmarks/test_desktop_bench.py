"""desktop_bench runs its three kinds of run on tiny settings, offscreen (no timings checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_desktop_bench_tiny(tmp_path: Path) -> None:
    """Ours (synthetic and server feed) and the textbook baseline each report sane figures."""
    out = tmp_path / "desktop.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.desktop_bench", "--charts", "2", "--points", "500",
            "--duration", "1", "--warmup", "0.5", "--baseline", "--ui-core", "-1",
            "--server-core", "-1", "--json", str(out),
        ],
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "chart refreshes /s, slowest chart" in done.stdout
    assert "tick-to-screen ms p99" in done.stdout
    report = json.loads(out.read_text())
    runs = {run["label"]: run for run in report["runs"]}
    assert list(runs) == ["ours/synthetic", "baseline/synthetic", "ours/server"]
    for label, run in runs.items():
        assert run["platform"] == "offscreen", label
        assert run["charts"] == 2 and run["points"] == 500
        assert run["window_s"] >= 1
        rates = run["chart_refreshes_per_s"]
        assert 0 < rates["min"] <= rates["median"] <= rates["max"], label
        for name in ("frame_ms", "latency_ms", "refresh_interval_ms"):
            figures = run[name]
            assert figures["samples"] > 0, (label, name)
            assert 0 <= figures["p50"] <= figures["p99"] <= figures["max"], (label, name)
        stalls = run["stalls"]  # the longest stall bounds every freeze (> 250 ms) it lists
        assert len(stalls["freezes_ms"]) == min(stalls["freezes"], 20), label
        assert all(f > 250 for f in stalls["freezes_ms"]), label
        assert max(stalls["freezes_ms"], default=0) <= stalls["longest_ms"] + 1, label
        assert stalls["longest_ms"] < run["window_s"] * 1000, label
        assert run["ticks_per_s"] > 0 and run["cpu_percent"] > 0
        assert run["rss_start_mb"] > 0 and run["rss_end_mb"] > 0
        assert isinstance(run["rss_growth_percent"], float)
    assert runs["ours/server"]["connections"] == 1
    assert runs["ours/server"]["server_cpu_percent"] > 0
    assert runs["ours/synthetic"]["frame_stats"]["paints"] > 0
    summary = report["summary"]["ours/synthetic"]["chart_refreshes_per_s.min"]
    assert summary["values"] == [runs["ours/synthetic"]["chart_refreshes_per_s"]["min"]]
