"""Live charts: one large chart of the selected symbol and a grid of small ones.

Ingest and paint are decoupled. Ticks land in the store as they arrive; the
window's single frame timer calls :meth:`SymbolChart.refresh` /
:meth:`ChartGrid.refresh` with the symbols that changed, and each changed
:class:`~.pane.PricePane` does one ``setData`` (or an in-place candle refresh).
Curves clip to the view and peak-downsample; auto-range is off and the price
axis has a fixed width, so a frame never re-lays the plot out. The grid is one
canvas (one scene, one paint) however many symbols it shows.
:class:`FrameStats` records refresh and paint durations and tick-to-screen
latency for the status bar and for benchmarks.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, Signal
from PySide6.QtGui import QMouseEvent, QPaintEvent

from .buffers import CANDLE_INTERVALS
from .chart_items import PriceAxis
from .history import BarHistory
from .indicators import IndicatorSpec
from .pane import ChartMode, PricePane
from .store import MarketStore
from .theme import MUTED

__all__ = ["ChartCanvas", "ChartGrid", "ChartMode", "FrameStats", "PricePane", "SymbolChart"]


class FrameStats:
    """Frame timings and tick-to-screen latency, kept for the last ``keep`` frames.

    The hook a render benchmark reads: ``refreshes`` counts pane updates (one
    ``setData`` each), ``paints`` counts canvas paints, and the deques hold
    durations and latencies in seconds.
    """

    def __init__(self, keep: int = 600) -> None:
        self.refreshes = 0
        self.paints = 0
        self.refresh_times: deque[float] = deque(maxlen=keep)
        self.paint_times: deque[float] = deque(maxlen=keep)
        self.latencies: deque[float] = deque(maxlen=keep)

    def record_refresh(self, seconds: float, panes: int) -> None:
        self.refreshes += panes
        self.refresh_times.append(seconds)

    def record_paint(self, seconds: float, newest_ts: float | None) -> None:
        self.paints += 1
        self.paint_times.append(seconds)
        if newest_ts is not None:
            self.latencies.append(max(0.0, time.time() - newest_ts))

    @staticmethod
    def percentile(values: Iterable[float], q: float) -> float | None:
        data = list(values)
        return float(np.percentile(data, q)) if data else None

    def summary(self) -> dict[str, float | int | None]:
        """Counters and p50/p95 of each timing, in milliseconds."""
        out: dict[str, float | int | None] = {"refreshes": self.refreshes, "paints": self.paints}
        for name, values in (
            ("refresh", self.refresh_times),
            ("paint", self.paint_times),
            ("latency", self.latencies),
        ):
            for q in (50, 95):
                value = self.percentile(values, q)
                out[f"{name}_p{q}_ms"] = None if value is None else value * 1000
        return out

    def reset(self) -> None:
        self.__init__(self.refresh_times.maxlen or 600)  # type: ignore[misc]


class ChartCanvas(pg.GraphicsLayoutWidget):  # type: ignore[misc]
    """A GraphicsLayoutWidget that times its paints and reports tick-to-screen latency."""

    def __init__(self, stats: FrameStats, parent: Any = None) -> None:
        super().__init__(parent=parent)
        self.stats = stats
        self.pending_ts: float | None = None
        """Newest tick timestamp handed to a curve since the last paint."""
        self.ci.setContentsMargins(4, 4, 4, 4)
        self.ci.setSpacing(2)

    def paintEvent(self, event: QPaintEvent) -> None:
        started = time.perf_counter()
        super().paintEvent(event)
        self.stats.record_paint(time.perf_counter() - started, self.pending_ts)
        self.pending_ts = None


class SymbolChart(ChartCanvas):
    """The large chart: price on top, volume below, of one selected symbol."""

    def __init__(self, store: MarketStore, stats: FrameStats, parent: Any = None) -> None:
        super().__init__(stats, parent)
        price = self.addPlot(
            row=0,
            col=0,
            axisItems={"bottom": pg.DateAxisItem(orientation="bottom"), "right": PriceAxis()},
        )
        volume = self.addPlot(
            row=1,
            col=0,
            axisItems={
                "bottom": pg.DateAxisItem(orientation="bottom"),
                "right": PriceAxis(volume=True),
            },
        )
        lower = self.addPlot(
            row=2,
            col=0,
            axisItems={"bottom": pg.DateAxisItem(orientation="bottom"), "right": PriceAxis()},
        )
        self.ci.layout.setRowStretchFactor(0, 4)
        self.ci.layout.setRowStretchFactor(1, 1)
        self.ci.layout.setRowStretchFactor(2, 1)
        self.pane = PricePane(price, store, volume, lower=lower)
        self.placeholder = pg.TextItem("Add a symbol to start", color=MUTED, anchor=(0.5, 0.5))
        self.placeholder.setParentItem(price.vb)
        price.vb.sigResized.connect(self._center_placeholder)

    def _center_placeholder(self, *_: Any) -> None:
        vb = self.pane.plot.vb
        self.placeholder.setPos(vb.width() / 2, vb.height() / 2)

    def set_symbol(self, symbol: str | None) -> None:
        self.pane.set_symbol(symbol)
        self.placeholder.setVisible(symbol is None)

    def refresh(self, dirty: set[str], force: bool = False) -> None:
        if self.pane.symbol is None or not (force or self.pane.symbol in dirty):
            return
        started = time.perf_counter()
        newest = self.pane.refresh(force)
        if newest is not None:
            self.pending_ts = newest if self.pending_ts is None else max(self.pending_ts, newest)
        self.stats.record_refresh(time.perf_counter() - started, 1)


class _GridSignals(QObject):
    symbol_activated = Signal(str)


class ChartGrid(ChartCanvas):
    """Small live charts of every watched symbol in one canvas (one scene, one paint)."""

    def __init__(self, store: MarketStore, stats: FrameStats, parent: Any = None) -> None:
        super().__init__(stats, parent)
        self.store = store
        self.panes: dict[str, PricePane] = {}
        self.mode: ChartMode = "line"
        self.interval = CANDLE_INTERVALS[0]
        self.history: BarHistory | None = None
        """Handed to each pane made, to load its bars."""
        self.indicators: list[IndicatorSpec] = []
        self.signals = _GridSignals()

    def set_symbols(self, symbols: list[str]) -> None:
        """Show exactly ``symbols``, in order, re-using the panes that stay."""
        for symbol in [s for s in self.panes if s not in symbols]:
            del self.panes[symbol]
        for item in list(self.ci.items):
            self.ci.removeItem(item)
        cols = max(1, math.ceil(math.sqrt(len(symbols))))
        for index, symbol in enumerate(symbols):
            row, col = divmod(index, cols)
            existing = self.panes.get(symbol)
            if existing is None:
                plot = pg.PlotItem(axisItems={"right": PriceAxis()})
                existing = PricePane(plot, self.store, compact=True)
                existing.history = self.history
                existing.set_mode(self.mode, self.interval)
                existing.set_indicators(self.indicators)
                existing.set_symbol(symbol)
                self.panes[symbol] = existing
            self.ci.addItem(existing.plot, row=row, col=col)
        self.panes = {s: self.panes[s] for s in symbols}

    def set_mode(self, mode: ChartMode, interval: float) -> None:
        self.mode, self.interval = mode, interval
        for pane in self.panes.values():
            pane.set_mode(mode, interval)

    def set_indicators(self, specs: list[IndicatorSpec]) -> None:
        """Draw ``specs`` on every small chart (those over the price: no room for a lower pane)."""
        self.indicators = list(specs)
        for pane in self.panes.values():
            pane.set_indicators(self.indicators)

    def set_connected(self, connected: bool) -> None:
        for pane in self.panes.values():
            pane.set_connected(connected)

    def go_live(self) -> None:
        for pane in self.panes.values():
            pane.go_live()

    def refresh(self, dirty: set[str], force: bool = False) -> None:
        started = time.perf_counter()
        count = 0
        for symbol, pane in self.panes.items():
            if force or symbol in dirty:
                newest = pane.refresh(force)
                if newest is not None:
                    count += 1
                    self.pending_ts = (
                        newest if self.pending_ts is None else max(self.pending_ts, newest)
                    )
        if count:
            self.stats.record_refresh(time.perf_counter() - started, count)

    def symbol_at(self, point: QPointF) -> str | None:
        """The symbol whose small chart is at ``point`` (scene coordinates)."""
        for symbol, pane in self.panes.items():
            if pane.plot.sceneBoundingRect().contains(point):
                return symbol
        return None

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        symbol = self.symbol_at(self.mapToScene(event.position().toPoint()))
        if symbol is not None:
            self.signals.symbol_activated.emit(symbol)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)
