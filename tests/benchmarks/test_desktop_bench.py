"""desktop_bench runs its three kinds of run on tiny settings, offscreen.

No speed is asserted; the figures of each run must agree with each other.
"""

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
        window = run["window_s"]
        # One refresh interval per chart refresh in the window, one latency per tick taken in.
        refreshes = (rates["min"] + rates["max"]) * window  # two charts: min and max are both
        assert abs(run["refresh_interval_ms"]["samples"] - refreshes) <= 3, (label, run)
        taken = run["ticks_per_s"] * window
        assert abs(run["latency_ms"]["samples"] - taken) <= 5 + 0.02 * taken, (label, run)
        # Each chart shows what it was handed; one hand-off may fall on either side of the window.
        handed = run["set_data_per_s"]
        assert all(abs(handed[k] - rates[k]) <= 1.01 / window for k in rates), (
            label,
            handed,
            rates,
        )
        assert 0 < run["ticks_per_s"] <= run["generated_ticks_per_s"] + 0.1, label
        assert 0 < run["cpu_percent"] <= 100 * (os.cpu_count() or 1) + 1, label
        start, end = run["rss_start_mb"], run["rss_end_mb"]
        assert 30 < start < 1000 and 30 < end < 1000, (label, start, end)
        growth = 100 * (end - start) / start
        assert abs(run["rss_growth_percent"] - growth) <= 10 / start + 0.01, label
    # The synthetic feed hands every generated tick over; the server conflates some.
    for label in ("ours/synthetic", "baseline/synthetic"):
        assert runs[label]["ticks_per_s"] == runs[label]["generated_ticks_per_s"], label
    server = runs["ours/server"]
    assert server["connections"] == 1
    assert 0 < server["server_cpu_percent"] <= 100 * (os.cpu_count() or 1) + 1
    assert 20 < server["server_rss_mb"] < 1000
    for label in ("ours/synthetic", "ours/server"):
        stats = runs[label]["frame_stats"]
        panes = runs[label]["pane_refreshes"]
        # Every timed refresh is a pane's; a pane also redraws once, untimed, when the desk
        # applies its indicators at start.
        assert 0 <= sum(panes.values()) - stats["refreshes"] <= len(panes), (label, stats, panes)
        assert 0 < stats["paints"] <= stats["refreshes"] + 10, label
    summary = report["summary"]["ours/synthetic"]["chart_refreshes_per_s.min"]
    assert summary["values"] == [runs["ours/synthetic"]["chart_refreshes_per_s"]["min"]]
