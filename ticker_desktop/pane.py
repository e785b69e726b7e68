"""One symbol's chart pane: price as a line or candles, optional volume, live-edge following.

A pane is refreshed by its canvas's frame (never per tick): one ``setData``
of a zero-copy view of the tick buffer, or an in-place candle refresh. While it
follows the live edge it scrolls the x range itself; the price range is fitted
to the data in view with hysteresis, so axes stay still most frames.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from typing import Any, Literal

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont

from .buffers import CANDLE_INTERVALS
from .chart_items import CandlesItem, Crosshair, LastPrice, PriceAxis, VolumeItem
from .curves import LiveCurve
from .history import BarHistory
from .indicators import IndicatorSpec
from .overlays import AlertLines, Comparison, IndicatorOverlay
from .pane_decor import LINE_BARS, PaneDecorations
from .store import MarketStore, SymbolSeries
from .theme import GRID, LINE, MUTED, TEXT

__all__ = ["AXIS_WIDTH", "COMPACT_AXIS_WIDTH", "ChartMode", "LiveCurve", "PricePane"]

ChartMode = Literal["line", "candles"]
AXIS_WIDTH = 64
"""Fixed price-axis width in pixels, so changing tick labels never re-lay the chart out."""
COMPACT_AXIS_WIDTH = 46
"""The grid charts' price axis: room for a label like 1,234.5."""
CANDLES_SHOWN = 400
"""Candles in view while following the live edge: a whole session of 1-minute history."""


class PricePane(PaneDecorations):
    """One symbol's price plot (line or candles) and, when given, its volume plot.

    Args:
        plot: the price plot, already placed in a layout.
        store: where the symbol's data lives.
        volume: a plot below for volume bars, x-linked to ``plot``.
        compact: a small grid chart (no crosshair, no time axis, smaller text).
        lower: a plot for oscillators (RSI, MACD), x-linked to ``plot``.
    """

    def __init__(
        self,
        plot: pg.PlotItem,
        store: MarketStore,
        volume: pg.PlotItem | None = None,
        compact: bool = False,
        lower: pg.PlotItem | None = None,
    ) -> None:
        self.plot = plot
        self.volume_plot = volume
        self.store = store
        self.compact = compact
        self.symbol: str | None = None
        self.mode: ChartMode = "line"
        self.interval = CANDLE_INTERVALS[0]
        self.following = True
        self.span = 120.0
        """Seconds shown while following the live edge."""
        self.refreshes = 0
        self.history: BarHistory | None = None
        """Loads bars into the store for this pane's symbol and width (set by the canvas)."""
        self.connected = True
        self._version = -1
        self._gap_end = -math.inf
        """End of the newest outage already marked."""
        self.gap_items: deque[Any] = deque()
        self.stale = False
        self._y: tuple[float, float] | None = None
        self._y_data = (0.0, 0.0)
        """Low and high of the data in view (the compact header shows them)."""
        self._header_key: tuple[str, int] | None = None
        self._header_at = -math.inf
        self._vol_top = 0.0
        self._style_plot(plot, compact)
        self.curve = LiveCurve(pen=pg.mkPen(LINE, width=1.5 if not compact else 1))
        self.curve.setSkipFiniteCheck(True)
        plot.addItem(self.curve)
        self.bar_line = pg.PlotDataItem(pen=pg.mkPen(LINE, width=1, style=Qt.PenStyle.DotLine))
        """Bar closes before the first tick held, so a line chart has history too."""
        plot.addItem(self.bar_line)
        # After addItem: PlotItem.addItem imposes the plot's own (off) settings on the curve.
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        self.candles = CandlesItem()
        plot.addItem(self.candles)
        self.volume = VolumeItem()
        if volume is not None:
            self._style_plot(volume, compact=False, volume=True)
            volume.setXLink(plot)
            volume.addItem(self.volume)
            volume.vb.sigRangeChangedManually.connect(self._user_moved)
        self.last_price = LastPrice(plot, labelled=True, compact=compact)
        fill = None if compact else pg.mkBrush(15, 18, 22, 190)
        self.header = pg.TextItem(color=TEXT, anchor=(0, 0), fill=fill)
        self.header.setParentItem(plot.vb)
        self.header.setPos(4, 2)
        if not compact:
            font = QFont()
            font.setPointSize(11)
            font.setBold(True)
            self.header.setFont(font)
        self.crosshair = None if compact else Crosshair(plot, self._describe)
        plot.vb.sigRangeChangedManually.connect(self._user_moved)
        self.lower_plot = lower
        if lower is not None:
            self._style_plot(lower, compact=False, volume=True)
            lower.setXLink(plot)
            lower.vb.sigRangeChangedManually.connect(self._user_moved)
            lower.setVisible(False)
        self.overlay = IndicatorOverlay(plot, lower)
        self.alert_lines = AlertLines(plot, labelled=not compact)
        self.comparison = Comparison(plot)
        self.log = False
        """A log price scale (percent comparison keeps a linear one)."""
        self.set_mode("line", self.interval)

    # -- setup ---------------------------------------------------------------------

    @staticmethod
    def _style_plot(plot: pg.PlotItem, compact: bool, volume: bool = False) -> None:
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.showGrid(x=True, y=True, alpha=0.12)
        plot.hideAxis("left")
        plot.showAxis("right")
        right = plot.getAxis("right")
        right.setWidth(AXIS_WIDTH if not compact else 52)
        right.setStyle(maxTextLevel=1, textFillLimits=[(0, 0.8), (2, 0.5), (4, 0.3), (6, 0.15)])
        font = QFont()
        font.setPointSize(8 if compact else 9)
        for name in ("right", "bottom"):
            axis = plot.getAxis(name)
            axis.setTickFont(font)
            axis.setPen(pg.mkPen(GRID))
            axis.setTextPen(pg.mkPen(MUTED))
        if compact:
            # Small charts: a compact price axis (few, short labels), no time axis and no
            # grid lines (labels and grids cost more to paint than the curve).
            plot.hideAxis("bottom")
            right.setStyle(maxTickLevel=0, tickLength=-3, tickTextOffset=2)
            font.setPointSize(7)
            right.setTickFont(font)
            right.setWidth(COMPACT_AXIS_WIDTH)
            plot.showGrid(x=False, y=False)
            plot.vb.setBorder(pg.mkPen(GRID))
        elif not volume:
            plot.getAxis("bottom").setStyle(showValues=False)
        vb = plot.vb
        vb.disableAutoRange()
        vb.setMouseEnabled(x=True, y=False)  # the price axis always fits what is in view
        vb.setDefaultPadding(0.0)
        for name in ("left", "right", "top", "bottom"):
            axis = plot.getAxis(name)
            if not axis.isVisible():
                # A hidden axis still re-computes its range and label on every range change.
                axis.unlinkFromView()

    def set_symbol(self, symbol: str | None) -> None:
        """Show ``symbol`` (or nothing) from its start, following the live edge."""
        if symbol == self.symbol:
            return
        self.symbol = symbol
        self.following = True
        self._version = -1
        self._y = None
        self._vol_top = 0.0
        for item in self.gap_items:
            self.plot.removeItem(item)
        self.gap_items.clear()
        self._gap_end = -math.inf
        self.curve.setData([], [])
        self.bar_line.setData([], [])
        self.candles.set_series(None)
        self.volume.set_series(None)
        self.last_price.hide()
        self.overlay.reset()
        self._set_header(symbol or "", TEXT)
        self.want_history()
        self.refresh()

    def set_mode(self, mode: ChartMode, interval: float) -> None:
        """Switch between line and candles and the candle width."""
        self.mode, self.interval = mode, interval
        self.curve.setVisible(mode == "line" or self.comparison.active)
        self.candles.setVisible(mode == "candles" and not self.comparison.active)
        if mode == "candles":
            self.span = max(CANDLES_SHOWN * interval, 120.0)
        else:
            self.span = 120.0
        self._version = -1
        self._y = None
        candles = self.store.candles(self.symbol, interval) if self.symbol else None
        self.candles.set_series(candles)
        self.volume.set_series(candles)
        self.bar_line.setVisible(mode == "line")
        self.want_history()
        self.refresh()

    def bar_interval(self) -> float:
        """The width of the bars this pane draws: its candles', or the line's history."""
        return self.interval if self.mode == "candles" else LINE_BARS

    def want_history(self, before: float | None = None) -> None:
        """Ask for the newest bars (or the page before ``before``) in the background."""
        if self.history is not None and self.symbol is not None:
            self.history.want(self.symbol, self.bar_interval(), before)

    def set_connected(self, connected: bool) -> None:
        """Grey the chart while disconnected."""
        if connected == self.connected:
            return
        self.connected = connected
        self.curve.setPen(
            pg.mkPen(LINE if connected else MUTED, width=1.5 if not self.compact else 1)
        )
        self.candles.set_muted(not connected)
        self.volume.set_muted(not connected)
        self.refresh(force=True)

    def set_stale(self, stale: bool) -> None:
        """Mark the symbol as silent for longer than expected (greys its header)."""
        if stale != self.stale:
            self.stale = stale
            self._header_at = -math.inf
            series = self._series()
            if series is not None:
                self._decorate(series)

    def go_live(self) -> None:
        """Follow the live edge again, keeping the current zoom."""
        (x0, x1), _ = self.plot.vb.viewRange()
        if x1 > x0 and not self.following:
            self.span = x1 - x0
        self.following = True
        self._y = None
        self.refresh(force=True)

    def _user_moved(self, *_: Any) -> None:
        self.following = False
        self._y = None
        self.refresh(force=True)

    def _series(self) -> SymbolSeries | None:
        return self.store.get(self.symbol) if self.symbol else None

    # -- per frame -------------------------------------------------------------------

    def refresh(self, force: bool = False) -> float | None:
        """Bring the pane up to date; returns the newest tick ts now shown if data changed.

        ``force`` redraws everything (after a mode, view or state change) at once.
        """
        if force:
            self._header_at = -math.inf
        series = self._series()
        if series is None:
            return None
        changed = series.version != self._version
        if not changed and not force:
            return None
        self._version = series.version
        ticks = series.ticks
        if not len(ticks):
            return None
        candles = self.store.candles(series.symbol, self.interval)
        assert candles is not None, "the pane's width is one the store offers"
        if self.candles.series is not candles:
            self.candles.set_series(candles)
            self.volume.set_series(candles)
        newest = float(ticks.last_ts)
        bars = self.store.candles(series.symbol, self.bar_interval())
        first = float(ticks.ts[0])
        if bars is not None and len(bars):
            first = min(first, float(bars.column("t")[0]))
        # Range first, then data: each curve clips and downsamples once, for the new range.
        with contextlib.ExitStack() as stack:
            for curve in self._curves():
                stack.enter_context(curve.deferring_range_changes())
            if self.following:
                # A young series fills the width; the view widens until the full span is reached.
                least = 10.0 * self.interval if self.mode == "candles" else 10.0
                span = min(self.span, max(newest - first, least) * 1.1)
                right = newest + span * 0.04
                self.plot.vb.setXRange(right - span, right, padding=0.0)
            if self.comparison.active:
                (x0, _), _ = self.plot.vb.viewRange()
                self.curve.setData(ticks.ts, Comparison.percent(ticks.ts, ticks.price, x0))
            elif changed and self.mode == "line":
                self.curve.setData(ticks.ts, np.log10(ticks.price) if self.log else ticks.price)
                self._draw_bar_line(series)
            if changed or force:
                self.overlay.refresh(series, self.mode, self.interval)
        if changed and self.mode == "candles":
            self.candles.refresh()
        if changed and self.volume_plot is not None:
            self.volume.refresh()
        self._fit_y(series)
        # Apply the new ranges now: ViewBox would do it while painting, and moving its
        # child group mid-paint schedules a second paint of the canvas.
        for plot in (self.plot, self.volume_plot, self.lower_plot):
            if plot is not None:
                plot.vb.updateMatrix()
        self._decorate(series)
        if not self.following and bars is not None and len(bars):
            (x0, _), _ = self.plot.vb.viewRange()
            oldest = float(bars.column("t")[0])
            if x0 < oldest:
                self.want_history(oldest)  # panned past the oldest bar: the page before it
        self.refreshes += 1
        return newest

    def _draw_bar_line(self, series: SymbolSeries) -> None:
        bars = self.store.candles(series.symbol, LINE_BARS)
        if bars is None or not len(series.ticks):
            return
        ends = bars.column("t") + LINE_BARS
        n = int(np.searchsorted(ends, float(series.ticks.ts[0]), side="right"))
        closes = bars.column("close")[:n]
        self.bar_line.setData(ends[:n], np.log10(closes) if self.log else closes)

    def _curves(self) -> list[LiveCurve]:
        return [self.curve, *self.comparison.curves.values()]

    def set_indicators(self, specs: list[IndicatorSpec]) -> None:
        """Draw ``specs`` over this pane (oscillators in its lower plot, if it has one)."""
        self.overlay.set_specs(specs)
        self.refresh(force=True)

    def set_log(self, log: bool) -> None:
        """Switch the price scale between linear and logarithmic."""
        self.log = log
        self.candles.set_log(log)
        self.overlay.upper_lines.log = log
        axis = self.plot.getAxis("right")
        if isinstance(axis, PriceAxis):
            axis.set_log(log)
        if self.crosshair is not None:
            self.crosshair.log = log
        self._y = None
        self._version = -1
        self.refresh(force=True)

    def set_comparison(self, symbols: list[str]) -> None:
        """Overlay ``symbols`` in percent from the view's left edge (none: plain prices)."""
        self.comparison.set_symbols([s for s in symbols if s != self.symbol])
        active = self.comparison.active
        self.candles.setVisible(self.mode == "candles" and not active)
        self.curve.setVisible(self.mode == "line" or active)
        # Lines in dollars mean nothing on a percent axis.
        self.overlay.upper_lines.setVisible(not active)
        self.alert_lines.set_visible(not active)
        axis = self.plot.getAxis("right")
        if isinstance(axis, PriceAxis):
            axis.set_percent(active)
        self._y = None
        self._version = -1
        self.refresh(force=True)
