"""What a desktop benchmark run measures: frames, tick-to-screen latency, stalls, CPU, memory.

Fed by callbacks (a chart got data, a refresh pass took so long, a canvas painted these
charts) rather than by reading widgets, so the same probes serve the real dashboard and the
textbook baseline. Memory stays fixed however long a run lasts (histograms, not lists).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer

from ticker_bench.bench import read_cores, read_proc

__all__ = ["FrameRecorder", "Histogram", "LoopWatch", "Progress", "Resources", "per_chart_rates"]

_Array = np.ndarray[Any, np.dtype[np.float64]]
FREEZE = 0.25
"""An event-loop stall longer than this (seconds) is a freeze."""
BEAT = 0.01
"""Heartbeat period of the stall detector, in seconds."""
PAGE = os.sysconf("SC_PAGE_SIZE")


class Histogram:
    """Counts in fixed-width bins (fixed memory however long the run), exact max."""

    def __init__(self, width: float = 0.25e-3, top: float = 10.0) -> None:
        self.width = width
        self.counts = np.zeros(int(top / width) + 1, dtype=np.int64)
        self.n = 0
        self.max = 0.0

    def add(self, values: _Array) -> None:
        if not len(values):
            return
        bins = np.minimum((values / self.width).astype(np.int64), len(self.counts) - 1)
        np.add.at(self.counts, np.maximum(bins, 0), 1)
        self.n += len(values)
        self.max = max(self.max, float(values.max()))

    def percentile(self, q: float) -> float | None:
        """The upper edge of the bin holding the q-th percentile (at most the max)."""
        if not self.n:
            return None
        index = int(np.searchsorted(np.cumsum(self.counts), math.ceil(self.n * q / 100)))
        return min((index + 1) * self.width, self.max)

    def summary_ms(self) -> dict[str, float | int | None]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1e3, 2)

        return {
            "p50": ms(self.percentile(50)),
            "p99": ms(self.percentile(99)),
            "max": ms(self.max if self.n else None),
            "samples": self.n,
        }

    def clear(self) -> None:
        self.counts[:] = 0
        self.n = 0
        self.max = 0.0


class FrameRecorder:
    """Turns refresh, data and paint callbacks into per-chart screen figures.

    Args:
        charts: how many charts.
        ts_of: the sorted tick timestamps a chart holds (to find the ticks a paint showed).
    """

    def __init__(self, charts: int, ts_of: Callable[[int], _Array]) -> None:
        self.ts_of = ts_of
        self.pending: list[float | None] = [None] * charts
        """Newest ts handed to each chart since its last paint."""
        self.on_screen = [-math.inf] * charts
        """Newest ts each chart has painted."""
        self.last_shown: list[float | None] = [None] * charts
        self.shown = np.zeros(charts, dtype=np.int64)
        self.handed = np.zeros(charts, dtype=np.int64)
        self.paints = 0
        self.frames = Histogram()
        self.intervals = Histogram()
        self.latency = Histogram()
        self._work = 0.0
        self._open = False

    def data(self, chart: int, newest: float) -> None:
        """A chart's curve was given data up to ``newest``."""
        self.pending[chart] = newest
        self.handed[chart] += 1

    def refreshed(self, seconds: float) -> None:
        """A refresh pass took ``seconds``: the previous frame ends, a new one starts."""
        if self._open:
            self.frames.add(np.array([self._work]))
        self._work, self._open = seconds, True

    def painted(self, seconds: float, charts: Iterable[int]) -> None:
        """A canvas showing ``charts`` finished a paint that took ``seconds``."""
        self._work += seconds
        self.paints += 1
        wall, now = time.time(), time.perf_counter()
        ages: list[_Array] = []
        for chart in charts:
            newest = self.pending[chart]
            if newest is None:
                continue
            self.pending[chart] = None
            shown = self.on_screen[chart]
            self.on_screen[chart] = newest
            if shown == -math.inf:
                continue  # the first paint shows the history, not live ticks
            ts = self.ts_of(chart)
            i0, i1 = np.searchsorted(ts, [shown, newest], side="right")
            ages.append(wall - ts[i0:i1])
            self.shown[chart] += 1
            last = self.last_shown[chart]
            if last is not None:
                self.intervals.add(np.array([now - last]))
            self.last_shown[chart] = now
        if ages:
            self.latency.add(np.concatenate(ages))

    def reset(self) -> None:
        """Start the measured window (what is on screen is kept)."""
        self.shown[:] = 0
        self.handed[:] = 0
        self.paints = 0
        for histogram in (self.frames, self.intervals, self.latency):
            histogram.clear()


class LoopWatch:
    """A heartbeat QTimer every 10 ms; a beat that comes late measures an event-loop stall."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._beat)
        self.last = time.perf_counter()
        self.longest = 0.0
        self.freezes: list[float] = []

    def start(self) -> None:
        self.last = time.perf_counter()
        self.timer.start(int(BEAT * 1000))

    def _beat(self) -> None:
        now = time.perf_counter()
        stall = now - self.last - BEAT
        self.last = now
        self.longest = max(self.longest, stall)
        if stall > FREEZE:
            self.freezes.append(stall)

    def reset(self) -> None:
        self.longest = 0.0
        self.freezes.clear()


class Resources:
    """CPU and RSS of this process, how busy its core was, and other processes' CPU.

    Args:
        others: pids by name (the ticker_server, the X server) whose CPU to report.
    """

    def __init__(self, others: dict[str, int]) -> None:
        self.others = others
        cores = sorted(os.sched_getaffinity(0))
        self.core = f"cpu{cores[0]}" if len(cores) == 1 else None
        self.mark()

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE / 1e6

    @staticmethod
    def cpu() -> float:
        times = os.times()
        return times.user + times.system

    def mark(self) -> None:
        self.at = time.perf_counter()
        self.cpu0 = self.cpu()
        self.rss0 = self.rss_mb()
        self.cores0 = read_cores()
        self.others0 = {name: read_proc(pid) for name, pid in self.others.items()}

    def since(self) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self.at, 1e-9)
        cores = read_cores()
        busy = {
            name: round(100 * (cores[name][0] - b[0]) / max(cores[name][1] - b[1], 1), 1)
            for name, b in self.cores0.items()
            if name in cores
        }
        out: dict[str, Any] = {
            "cpu_percent": round(100 * (self.cpu() - self.cpu0) / elapsed, 1),
            "core": self.core,
            "core_busy_percent": busy,
            "rss_start_mb": round(self.rss0, 1),
            "rss_end_mb": round(self.rss_mb(), 1),
        }
        out["rss_growth_percent"] = round(100 * (out["rss_end_mb"] / self.rss0 - 1), 2)
        for name, pid in self.others.items():
            before, after = self.others0[name], read_proc(pid)
            if before is not None and after is not None:
                out[f"{name}_cpu_percent"] = round(100 * (after.cpu - before.cpu) / elapsed, 1)
                out[f"{name}_rss_mb"] = round(after.rss_kib / 1024, 1)
        return out


class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()

    def show(self, text: str) -> None:
        line = f"[{self.label}] {text}"
        sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def per_chart_rates(counts: np.ndarray[Any, Any], elapsed: float) -> dict[str, float]:
    """Min, median and max over the charts of ``counts`` per second."""
    per_s = counts / elapsed
    return {
        "min": round(float(per_s.min()), 2),
        "median": round(float(np.median(per_s)), 2),
        "max": round(float(per_s.max()), 2),
    }
