"""One desktop benchmark run, inside the process that draws the charts.

Started by :mod:`benchmarks.desktop_bench` as ``python -m benchmarks.desktop_probe`` (a
fresh process per run, so no memory or Qt state carries over). It opens either the
real dashboard (:class:`~ticker_desktop.main_window.MainWindow` in its grid view) or
the textbook baseline (:mod:`benchmarks.textbook_charts`), pre-fills every chart with
history, feeds it (synthetic ticks at an exact rate, or a ticker_server over
WebSocket), and measures for a window (with :mod:`benchmarks.desktop_metrics`):

* screen refreshes per chart: paints after which a chart showed newer data;
* frame time: one refresh pass (the ``setData`` calls) plus the paints until the next;
* tick-to-screen latency of every tick: the end of the paint that first showed it
  minus the tick's ``ts``;
* event-loop stalls, from a 10 ms QTimer heartbeat (a freeze is a beat > 250 ms late);
* process CPU, how busy its core was (all processes), and RSS.

Figures go to stderr as a progress line and to ``--out`` as JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt loads; xvfb runs pass xcb

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qasync
from PySide6.QtCore import QCoreApplication, QEvent, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from ticker_desktop.app import make_window
from ticker_desktop.client import ClientOptions, ConnectionState, StateChanged
from ticker_desktop.indicators import IndicatorSpec
from ticker_desktop.main_window import FRAME_MS
from ticker_desktop.store import MarketStore
from ticker_desktop.theme import apply_dark_theme
from ticker_server.market import DEFAULT_UNIVERSE
from ticker_server.protocol import Tick

from .desktop_metrics import FrameRecorder, LoopWatch, Progress, Resources, per_chart_rates
from .textbook_charts import TextbookDashboard

__all__ = ["Ours", "SyntheticFeed", "Textbook", "main"]

_Array = np.ndarray[Any, np.dtype[np.float64]]
SNAPSHOT_SPAN = 4.0
"""Seconds of ticks a server's snapshot (300 ticks, about 84 a second per symbol) covers."""


class SyntheticFeed:
    """Every symbol gets exactly ``rate`` ticks a second, stamped with their scheduled time.

    A 10 ms timer hands over the ticks that are due; a late timer delivers late ticks,
    which then count as latency, as a socket's backlog would.

    Args:
        prices: each chart's last price.
        rate: ticks per second per symbol.
        sink: gets (first seq, ts of the batch, prices[chart, tick]).
        seq: the last seq already used.
    """

    def __init__(
        self,
        prices: Sequence[float],
        rate: float,
        sink: Callable[[int, _Array, _Array], None],
        seq: int,
        seed: int = 7,
    ) -> None:
        self.rate = rate
        self.sink = sink
        self.prices = np.array(prices, dtype=np.float64)
        self.rng = np.random.default_rng(seed)
        self.seq = seq
        self.sent = 0
        self.started = 0.0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._due)

    def start(self, at: float) -> None:
        """Ticks are due from ``at`` (epoch seconds) on."""
        self.started = at
        self.timer.start(10)

    def stop(self) -> None:
        self.timer.stop()

    def _due(self) -> None:
        due = int((time.time() - self.started) * self.rate)
        if due <= self.sent:
            return
        ts = self.started + np.arange(self.sent, due) / self.rate
        prices = self.prices[:, None] * np.exp(
            np.cumsum(self.rng.normal(0.0, 2e-4, (len(self.prices), len(ts))), axis=1)
        )
        self.prices = prices[:, -1].copy()
        self.sink(self.seq + 1, ts, prices)
        self.seq += len(ts)
        self.sent = due


def history(start: float, n: int, rate: float, end: float, seed: int) -> tuple[_Array, _Array]:
    """``n`` points of a random walk from ``start``, ``rate`` a second, the last at ``end``."""
    rng = np.random.default_rng(seed)
    ts = end - (n - 1 - np.arange(n)) / rate
    return ts, start * np.exp(np.cumsum(rng.normal(0.0, 2e-4, n)))


def _history_ticks(symbol: str, ts: _Array, prices: _Array) -> list[Tick]:
    """Pre-filled history, for the snapshot's path into the store (``ingest(live=False)``)."""
    return [
        Tick.model_construct(  # no validation: the history is generated, not received
            symbol=symbol, seq=k + 1, ts=float(t), price=float(p), bid=float(p) - 0.01,
            ask=float(p) + 0.01, size=100, volume=100 * (k + 1), merged=None, high=None, low=None,
        )
        for k, (t, p) in enumerate(zip(ts, prices, strict=True))
    ]  # fmt: skip


def _ingest_cost(sample: int = 5000) -> float:
    """Seconds a pre-filled tick costs (building it and storing it), on a scratch store."""
    store = MarketStore()
    store.add("X")
    ts, prices = history(100.0, sample, 100.0, time.time(), 0)
    started = time.perf_counter()
    store.ingest(_history_ticks("X", ts, prices), live=False)
    return (time.perf_counter() - started) / sample


def _ticks(symbol: str, seq: int, ts: _Array, prices: _Array) -> list[Tick]:
    return [
        Tick(
            symbol=symbol, seq=seq + k, ts=float(t), price=float(p), bid=float(p) - 0.01,
            ask=float(p) + 0.01, size=100, volume=100 * (seq + k),
        )
        for k, (t, p) in enumerate(zip(ts, prices, strict=True))
    ]  # fmt: skip


class Ours:
    """The real dashboard window in its grid view, instrumented through ``window.stats``."""

    def __init__(self, args: argparse.Namespace, symbols: list[str], settings: Path) -> None:
        options = ClientOptions(max_rate=None) if args.unthrottled else ClientOptions()
        self.symbols = symbols
        self.window = make_window(
            args.url or "ws://127.0.0.1:9",
            (),
            QSettings(str(settings), QSettings.Format.IniFormat),
            options,
            remember_url=False,
        )
        self.window.grid_action.setChecked(True)
        # Issue 14's goal runs with indicators on every chart; none unless asked, as before.
        self.window.desk.set_indicators("grid", args.indicators)
        # The desk's docks would take width from the grid: keep the canvas as measured before.
        self.window.desk.tape_dock.hide()
        self.window.desk.alerts.dock.hide()
        self.store = self.window.store
        self.recorder = FrameRecorder(len(symbols), self._ts_of)
        self.feed: SyntheticFeed | None = None
        self.connections = 0
        self.window.bridge.state_changed.connect(self._on_state)
        self._instrument()

    def _on_state(self, event: StateChanged) -> None:
        if event.state is ConnectionState.LIVE:
            self.connections += 1

    def _ts_of(self, chart: int) -> _Array:
        series = self.store.get(self.symbols[chart])
        return series.ticks.ts if series is not None else np.zeros(0)

    def _instrument(self) -> None:
        stats, recorder = self.window.stats, self.recorder
        record_refresh, record_paint = stats.record_refresh, stats.record_paint
        charts = range(len(self.symbols))

        def on_refresh(seconds: float, panes: int) -> None:
            record_refresh(seconds, panes)
            recorder.refreshed(seconds)

        def on_paint(seconds: float, newest_ts: float | None) -> None:
            record_paint(seconds, newest_ts)
            recorder.painted(seconds, charts)

        stats.record_refresh = on_refresh  # type: ignore[method-assign]
        stats.record_paint = on_paint  # type: ignore[method-assign]

    def _hook_panes(self) -> None:
        for index, symbol in enumerate(self.symbols):
            pane = self.window.grid.panes[symbol]
            refresh = pane.refresh

            def hooked(force: bool = False, index: int = index, refresh: Any = refresh) -> Any:
                newest = refresh(force)
                if newest is not None:
                    self.recorder.data(index, newest)
                return newest

            pane.refresh = hooked  # type: ignore[method-assign]

    async def open(self, points: int, rate: float, synthetic: bool) -> None:
        """Show the window, pre-fill every chart, then start the feed (or connect) and the frames.

        Pre-filling a million ticks takes about 15 s, so the history is stamped to end when the
        pre-fill is expected to: the charts then show no hole before the live ticks. With a
        server, its snapshot (its last ~300 ticks) fills the last seconds instead.
        """
        window = self.window
        window.show()
        window.bridge.watch(self.symbols)  # the client is not started yet
        self._hook_panes()
        margin = 0.0 if synthetic else SNAPSHOT_SPAN
        end = time.time() + _ingest_cost() * points * len(self.symbols) - margin
        last = []
        for index, symbol in enumerate(self.symbols):
            ts, prices = history(DEFAULT_UNIVERSE[index].price, points, rate, end, index)
            self.store.ingest(_history_ticks(symbol, ts, prices), live=False)
            last.append(float(prices[-1]))
        await _until(lambda: time.time() >= end + margin, "the history's end", margin + 60)
        if synthetic:
            # Ticks are due from the history's end: a late pre-fill is caught up at once.
            self.feed = SyntheticFeed(last, rate, self._ingest, points)
            self.feed.start(end + 1 / rate)
            window.timer.start(FRAME_MS)
        else:
            self.store.new_epoch()  # the server's seqs start at 1, after this history's
            window.start()

    def _ingest(self, seq: int, ts: _Array, prices: _Array) -> None:
        ticks: list[Tick] = []
        for index, symbol in enumerate(self.symbols):
            ticks += _ticks(symbol, seq, ts, prices[index])
        self.store.ingest(ticks)

    def live(self) -> bool:
        live = self.window.client.state is ConnectionState.LIVE
        return live and self.store.received.rate(time.monotonic()) > 0

    def received(self) -> tuple[int, int]:
        return self.store.accepted, self.store.accepted + self.store.conflated

    def extra(self) -> dict[str, Any]:
        size, rtt = self.window.grid.size(), self.window.client.rtt
        return {
            "canvas_px": [size.width(), size.height()],
            "frame_stats": self.window.stats.summary(),
            "pane_refreshes": {s: p.refreshes for s, p in self.window.grid.panes.items()},
            "client_rtt_ms": None if rtt is None else round(rtt * 1e3, 2),
            "connections": None if self.feed is not None else self.connections,
        }

    async def close(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        self.window.close()
        await self.window.shutdown()
        self.window.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


class Textbook:
    """The textbook baseline, fed by the same synthetic feed."""

    def __init__(self, args: argparse.Namespace, symbols: list[str]) -> None:
        self.symbols = symbols
        self.recorder = FrameRecorder(len(symbols), self._ts_of)
        recorder = self.recorder
        self.board = TextbookDashboard(
            symbols,
            args.points,
            FRAME_MS,
            on_data=recorder.data,
            on_refresh=recorder.refreshed,
            on_paint=lambda chart, seconds: recorder.painted(seconds, (chart,)),
        )
        self.board.resize(*args.baseline_size)
        self.feed: SyntheticFeed | None = None
        self.count = 0

    def _ts_of(self, chart: int) -> _Array:
        return self.board.buffers[chart].x

    def open(self, points: int, rate: float) -> None:
        self.board.show()
        end = time.time()
        last = []
        for index in range(len(self.symbols)):
            ts, prices = history(DEFAULT_UNIVERSE[index].price, points, rate, end, index)
            self.board.append(index, ts, prices)
            last.append(float(prices[-1]))
        self.feed = SyntheticFeed(last, rate, self._ingest, points)
        self.feed.start(end + 1 / rate)
        self.board.start()

    def _ingest(self, seq: int, ts: _Array, prices: _Array) -> None:
        for index in range(len(self.symbols)):
            self.board.append(index, ts, prices[index])
        self.count += prices.size

    def received(self) -> tuple[int, int]:
        return self.count, self.count

    def extra(self) -> dict[str, Any]:
        size = self.board.size()
        return {"canvas_px": [size.width(), size.height()]}

    async def close(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        self.board.stop()
        self.board.close()
        self.board.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.desktop_probe",
        description="One desktop benchmark run (started by benchmarks.desktop_bench).",
    )
    parser.add_argument("--target", choices=["ours", "baseline"], default="ours")
    parser.add_argument("--url", help="a ticker_server to connect to (default: synthetic feed)")
    parser.add_argument("--server-pid", type=int, help="the server's pid, for its CPU")
    parser.add_argument("--xserver-pid", type=int, help="the X server's pid, for its CPU")
    parser.add_argument("--unthrottled", action="store_true", help="ask the server for every tick")
    parser.add_argument("--charts", type=int, default=20)
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=100.0, help="ticks/s per symbol")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--live-timeout", type=float, default=30.0)
    parser.add_argument("--rss-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument(
        "--baseline-size", type=int, nargs=2, default=[876, 809], metavar=("W", "H"),
        help="the baseline window's size: by default that of ours' grid canvas",
    )  # fmt: skip
    parser.add_argument("--out", help="write the JSON report here (default: stdout)")
    parser.add_argument(
        "--indicators",
        type=_indicator_keys,
        default=[],
        help="indicators on every chart, e.g. sma:20,ema:50,vwap,bollinger ('desk' for those four)",
    )
    return parser.parse_args(argv)


def _indicator_keys(text: str) -> list[str]:
    if text == "desk":
        return ["sma:20", "ema:50", "vwap", "bollinger"]
    keys = [k for k in text.split(",") if k]
    for key in keys:
        IndicatorSpec.parse(key)  # ValueError: argparse reports the bad key
    return keys


async def _until(predicate: Callable[[], bool], what: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {limit:.0f} s")
        await asyncio.sleep(0.05)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Open the subject, feed it, measure one window, close it; returns the report."""
    symbols = [listing.symbol for listing in DEFAULT_UNIVERSE[: args.charts]]
    feed = "server" if args.url else "synthetic"
    label = f"{args.target}/{feed}"
    progress = Progress(label)
    progress.show(f"pre-filling {args.charts} x {args.points:,} points")
    started = time.perf_counter()
    subject: Ours | Textbook
    with tempfile.TemporaryDirectory() as home:
        if args.target == "ours":
            subject = Ours(args, symbols, Path(home) / "settings.ini")
            await subject.open(args.points, args.rate, synthetic=feed == "synthetic")
            if feed == "server":
                await _until(subject.live, "live ticks from the server", args.live_timeout)
        else:
            subject = Textbook(args, symbols)
            subject.open(args.points, args.rate)
        setup = time.perf_counter() - started
        watch = LoopWatch()
        watch.start()
        try:
            await asyncio.sleep(args.warmup)
            return await _window(args, subject, watch, progress, setup, label)
        finally:
            watch.timer.stop()
            await subject.close()
            progress.done()


async def _window(
    args: argparse.Namespace,
    subject: Ours | Textbook,
    watch: LoopWatch,
    progress: Progress,
    setup: float,
    label: str,
) -> dict[str, Any]:
    recorder = subject.recorder
    recorder.reset()
    watch.reset()
    others = {"server": args.server_pid, "xserver": args.xserver_pid}
    resources = Resources({name: pid for name, pid in others.items() if pid})
    received0, generated0 = subject.received()
    rss: list[tuple[float, float]] = [(0.0, resources.rss0)]
    t0 = time.perf_counter()
    next_rss = args.rss_every
    while (elapsed := time.perf_counter() - t0) < args.duration:
        await asyncio.sleep(min(1.0, args.duration - elapsed))
        elapsed = time.perf_counter() - t0
        if elapsed >= next_rss:
            rss.append((round(elapsed, 1), round(Resources.rss_mb(), 1)))
            next_rss += args.rss_every
        shown = recorder.shown / max(elapsed, 1e-9)
        frame_p99 = recorder.frames.percentile(99)
        progress.show(
            f"{elapsed:5.1f}/{args.duration:g} s  chart refreshes/s min {shown.min():.1f}"
            f" median {np.median(shown):.1f}  frame p99 "
            f"{'-' if frame_p99 is None else f'{frame_p99 * 1e3:.0f}'} ms"
            f"  longest stall {watch.longest * 1e3:.0f} ms"
            f"  cpu {100 * (Resources.cpu() - resources.cpu0) / max(elapsed, 1e-9):.0f}%"
            f"  rss {Resources.rss_mb():.0f} MB"
        )
    elapsed = time.perf_counter() - t0
    used = resources.since()
    received, generated = subject.received()
    canvases = 1 if args.target == "ours" else args.charts
    times = np.array([t for t, _ in rss])
    sizes = np.array([m for _, m in rss])
    slope = float(np.polyfit(times, sizes, 1)[0]) * 60 if len(rss) > 2 else None
    app = QApplication.instance()
    return {
        "label": label,
        "target": args.target,
        "feed": "server" if args.url else "synthetic",
        "platform": app.platformName() if isinstance(app, QApplication) else None,
        "charts": args.charts,
        "points": args.points,
        "rate": args.rate,
        "indicators": getattr(args, "indicators", []),
        "setup_s": round(setup, 1),
        "window_s": round(elapsed, 2),
        "chart_refreshes_per_s": per_chart_rates(recorder.shown, elapsed),
        "set_data_per_s": per_chart_rates(recorder.handed, elapsed),
        "paints_per_s": round(recorder.paints / elapsed / canvases, 2),
        "frame_ms": recorder.frames.summary_ms(),
        "refresh_interval_ms": recorder.intervals.summary_ms(),
        "latency_ms": recorder.latency.summary_ms(),
        "stalls": {
            "longest_ms": round(watch.longest * 1e3, 1),
            "freezes": len(watch.freezes),
            "freezes_ms": sorted((round(f * 1e3) for f in watch.freezes), reverse=True)[:20],
        },
        "ticks_per_s": round((received - received0) / elapsed, 1),
        "generated_ticks_per_s": round((generated - generated0) / elapsed, 1),
        **used,
        "rss_slope_mb_per_min": None if slope is None else round(slope, 2),
        "rss_series": rss,
        **subject.extra(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)
    if args.target == "ours":
        apply_dark_theme(app)
    report: dict[str, Any] = qasync.run(measure(args))
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
