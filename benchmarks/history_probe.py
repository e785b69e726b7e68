"""How fast the dashboard opens full: history drawn on open, on a width change, on paging back.

Runs ``ticker-server`` with its defaults (the 6.5 h backfill) as the ``--demo`` does,
opens the real window (offscreen Qt, or xcb under Xvfb) on 1-minute candles and measures:

* ``open_s``: from the window shown to >= ``--hours`` of 1-minute candles drawn (goal <= 2 s);
* ``switch_s``: from choosing 5-minute candles to the session of them drawn (goal <= 200 ms);
* ``page_s``: on 1-second candles, from panning past the oldest to the previous page drawn
  (goal <= 200 ms);
* ``stall_s``: the longest event-loop stall over all of it, from a 10 ms heartbeat
  (goal <= 100 ms); ``open_stall_s``, ``pre_switch_stall_s`` (following the live edge
  after the open), ``switch_stall_s`` and ``page_stall_s`` split it by phase.

"Drawn" means the chart's candle item holds the series and a repaint of it has ended.
Run: ``python -m benchmarks.history_probe [--out FILE]``; figures go to stdout as JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt loads; xvfb runs pass xcb

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import qasync
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from ticker_desktop.app import DemoServer, make_window
from ticker_desktop.client import ConnectionState
from ticker_desktop.main_window import MainWindow
from ticker_desktop.theme import apply_dark_theme

from .desktop_metrics import LoopWatch

__all__ = ["main"]

LIMIT = 30.0
"""Seconds any one step may take before the probe gives up."""


async def drawn(window: MainWindow, done: Callable[[], bool]) -> float:
    """Seconds until ``done()`` holds after a paint of the chart (checked every 2 ms)."""
    started = time.perf_counter()
    async with asyncio.timeout(LIMIT):
        while True:
            window.chart.repaint()  # a synchronous paint: "drawn" means a paint has ended
            if done():
                return time.perf_counter() - started
            await asyncio.sleep(0.002)


def span(window: MainWindow, interval: float) -> float:
    """Seconds of candles of ``interval`` the chart draws (0 unless the item shows them)."""
    pane = window.chart.pane
    candles = window.store.candles("AAPL", interval)
    if candles is None or pane.candles.series is not candles or pane.interval != interval:
        return 0.0
    t = candles.column("t")
    return float(t[-1] - t[0]) if len(t) else 0.0


async def probe(args: argparse.Namespace) -> dict[str, Any]:
    server = DemoServer(args.server_args)
    url = await server.start()
    watch = LoopWatch()
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "probe.ini"), QSettings.Format.IniFormat)
    settings.setValue("chart/mode", "candles")
    settings.setValue("chart/interval", 60.0)
    window = make_window(url, ["AAPL"], settings)
    figures: dict[str, Any] = {"url": url}
    try:
        window.resize(1600, 1000)
        window.show()
        watch.start()
        window.start()
        figures["open_s"] = await drawn(window, lambda: span(window, 60.0) >= args.hours * 3600)
        figures["open_candles"] = len(window.store.candles("AAPL", 60.0) or ())
        figures["open_stall_s"], figures["stall_s"] = watch.longest, watch.longest
        watch.reset()
        assert window.status.state is ConnectionState.LIVE
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        window.interval_box.setCurrentIndex(window.interval_box.findData(300.0))
        figures["switch_call_s"] = time.perf_counter() - t0
        figures["pre_switch_stall_s"] = watch.longest
        figures["stall_s"] = max(figures["stall_s"], watch.longest)
        watch.reset()
        figures["switch_s"] = await drawn(window, lambda: span(window, 300.0) >= 6 * 3600)
        figures["switch_stall_s"] = watch.longest
        window.interval_box.setCurrentIndex(window.interval_box.findData(1.0))
        await drawn(window, lambda: span(window, 1.0) >= 900)
        await asyncio.sleep(0.5)
        figures["stall_s"] = max(figures["stall_s"], watch.longest)
        watch.reset()
        candles = window.store.candles("AAPL", 1.0)
        assert candles is not None
        held, oldest = len(candles), float(candles.column("t")[0])
        pane = window.chart.pane
        pane.plot.vb.setXRange(oldest - 300, oldest + 300, padding=0)
        started = time.perf_counter()
        pane._user_moved()  # as a drag by the user does
        await drawn(window, lambda: len(window.store.candles("AAPL", 1.0) or ()) > held)
        figures["page_s"] = time.perf_counter() - started
        figures["paged_candles"] = len(window.store.candles("AAPL", 1.0) or ()) - held
        figures["page_stall_s"] = watch.longest
        figures["stall_s"] = max(figures["stall_s"], watch.longest)
    finally:
        window.close()
        await window.shutdown()
        await server.stop()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=6.0, help="history that counts as full")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    parser.add_argument("server_args", nargs="*", help="more ticker-server flags (after --)")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    apply_dark_theme(app)
    app.setQuitOnLastWindowClosed(False)  # the probe closes the window, then cleans up
    figures: dict[str, Any] = qasync.run(probe(args))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
