"""What a pane draws around its data: fitted price and volume ranges, header, gaps, crosshair.

Split from :mod:`.pane` (which draws the data itself) as a mixin of
:class:`~.pane.PricePane`; the attributes below are the pane's, set in its ``__init__``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any, Literal

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from .chart_items import LastPrice
from .overlays import AlertLines, Comparison, IndicatorOverlay
from .store import MAX_GAPS, MarketStore, SymbolSeries
from .theme import ACCENT, DOWN, GAP, MUTED, TEXT, UP

__all__ = ["HEADER_PERIOD", "LINE_BARS", "PaneDecorations"]

LINE_BARS = 60.0
"""The bar width whose closes a line chart draws where it has no ticks."""
HEADER_PERIOD = 0.1
"""Seconds between updates of a pane's header text (the curve itself updates every frame)."""


class PaneDecorations:
    """The price pane's ranges and decorations (a mixin of :class:`~.pane.PricePane`)."""

    plot: pg.PlotItem
    volume_plot: pg.PlotItem | None
    lower_plot: pg.PlotItem | None
    store: MarketStore
    compact: bool
    mode: Literal["line", "candles"]
    interval: float
    following: bool
    connected: bool
    stale: bool
    log: bool
    overlay: IndicatorOverlay
    comparison: Comparison
    alert_lines: AlertLines
    last_price: LastPrice
    header: pg.TextItem
    gap_items: deque[Any]
    _y: tuple[float, float] | None
    _y_data: tuple[float, float]
    _vol_top: float
    _gap_end: float
    _header_at: float
    _header_key: tuple[str, int] | None

    def _series(self) -> SymbolSeries | None:
        raise NotImplementedError

    def _fit_y(self, series: SymbolSeries) -> None:
        (x0, x1), _ = self.plot.vb.viewRange()
        if self.lower_plot is not None and self.overlay.has_lower():
            span = self.overlay.lower_range(x0, x1)
            if span is not None:
                self.lower_plot.vb.setYRange(*span, padding=0.0)
        if self.comparison.active:
            ts = series.ticks.ts
            i0, i1 = np.searchsorted(ts, [x0, x1])
            own = Comparison.percent(ts, series.ticks.price, x0)[max(0, i0 - 1) : i1 + 1]
            others = self.comparison.refresh(self.store, x0, x1)
            if not len(own):
                return
            lo, hi = float(own.min()), float(own.max())
            if others is not None:
                lo, hi = min(lo, others[0]), max(hi, others[1])
            self._set_y(lo, hi)
            return
        if self.mode == "line":
            ts = series.ticks.ts
            i0, i1 = np.searchsorted(ts, [x0, x1])
            # Include the point just outside each edge: the line runs to it.
            window = series.ticks.price[max(0, i0 - 1) : i1 + 1]
            bars = series.candles.get(LINE_BARS)
            if bars is not None and len(bars) and len(ts) and x0 < ts[0]:
                # The dotted bar closes before the first tick are in view too.
                ends = bars.column("t") + LINE_BARS
                j0, j1 = np.searchsorted(ends, [x0, min(x1, float(ts[0]))])
                window = np.concatenate((bars.column("close")[max(0, j0 - 1) : j1 + 1], window))
            if not len(window):
                return
            lo, hi = float(window.min()), float(window.max())
            if self.volume_plot is not None:
                c = series.candles[self.interval]
                j0, j1 = np.searchsorted(c.column("t"), [x0 - self.interval, x1])
                self._fit_volume(c.column("volume")[j0:j1])
        else:
            c = series.candles[self.interval]
            t = c.column("t")
            i0, i1 = np.searchsorted(t, [x0 - self.interval, x1])
            if i1 <= i0:
                return
            lo, hi = float(c.column("low")[i0:i1].min()), float(c.column("high")[i0:i1].max())
            self._fit_volume(c.column("volume")[i0:i1])
        self._y_data = (lo, hi)
        band = self.overlay.band_range(x0, x1)
        if band is not None:
            lo, hi = min(lo, band[0]), max(hi, band[1])
        if self.log:
            lo, hi = math.log10(lo), math.log10(hi)
        self._set_y(lo, hi)

    def _set_y(self, lo: float, hi: float) -> None:
        pad = max((hi - lo) * 0.08, abs(hi) * 1e-4, 1e-6)
        # Headroom for the header text in the top left corner.
        top = pad + (hi - lo) * (0.3 if self.compact else 0.08)
        want = (lo - pad, hi + top)
        held = self._y
        # Keep the axis still unless the data leaves it (or reaches under the header),
        # or fills less than half of it.
        if (
            held is None
            or lo < held[0]
            or hi + (top - pad) > held[1]
            or (hi - lo) < 0.5 * (held[1] - held[0])
        ):
            self._y = want
            self.plot.vb.setYRange(*want, padding=0.0)

    def _fit_volume(self, volumes: np.ndarray[Any, Any]) -> None:
        if self.volume_plot is None or not len(volumes):
            return
        top = float(volumes.max()) * 1.15 or 1.0
        if top > self._vol_top or top < 0.5 * self._vol_top:
            self._vol_top = top
            self.volume_plot.vb.setYRange(0.0, top, padding=0.0)

    def _decorate(self, series: SymbolSeries) -> None:
        last = series.last
        if last is None:
            return
        (x0, x1), _ = self.plot.vb.viewRange()
        if self.comparison.active:
            self.last_price.hide()
        else:
            y = math.log10(last.price) if self.log else None
            self.last_price.show(x0, x1, last.price, y)
        self.alert_lines.show(x0, x1, self.log and not self.comparison.active)
        for gap in series.gaps:
            if gap.end > self._gap_end:
                self._mark_gap(gap.start, gap.end)
                self._gap_end = gap.end
        now = time.monotonic()
        if now - self._header_at < HEADER_PERIOD:
            return  # re-laying out the header text costs more than drawing the curve
        self._header_at = now
        pct = series.change_pct
        sign = "" if pct is None else f"  {pct:+.2f}%"
        color = TEXT if pct is None or pct == 0 else (UP if pct > 0 else DOWN)
        if not self.connected or self.stale:
            color = MUTED
        live = "" if self.following or self.compact else "   ⏸ history (End: live)"
        stale = "  · stale" if self.stale and self.connected else ""
        text = f"{series.symbol}  {last.price:,.2f}{sign}{stale}{live}"
        if self.compact and self._y is not None:
            text += f"\nH {self._y_data[1]:,.2f}  L {self._y_data[0]:,.2f}"
        self._set_header(text, color)

    def _set_header(self, text: str, color: QColor) -> None:
        # TextItem.setText re-lays out HTML; skip it when nothing changed.
        key = (text, color.rgba())
        if key != self._header_key:
            self._header_key = key
            self.header.setText(text, color=color)

    def _mark_gap(self, start: float, end: float) -> None:
        region = pg.LinearRegionItem(
            values=(start, max(end, start + 0.05)),
            movable=False,
            brush=pg.mkBrush(GAP),
            pen=pg.mkPen(None),
        )
        region.setZValue(-10)
        marker = pg.InfiniteLine(
            pos=end,
            angle=90,
            movable=False,
            pen=pg.mkPen(ACCENT, width=1, style=Qt.PenStyle.DashLine),
            label=None if self.compact else "reconnected",
            labelOpts={"position": 0.08, "color": ACCENT, "rotateAxis": (1, 0)},
        )
        for item in (region, marker):
            self.plot.addItem(item, ignoreBounds=True)
            self.gap_items.append(item)
        while len(self.gap_items) > 2 * MAX_GAPS:
            self.plot.removeItem(self.gap_items.popleft())

    def _describe(self, x: float) -> str:
        series = self._series()
        if series is None or not len(series.ticks):
            return ""
        if self.mode == "candles":
            c = series.candles[self.interval]
            t = c.column("t")
            i = int(np.searchsorted(t, x, side="right")) - 1
            if i < 0:
                return ""
            o, h, lo, cl, v = (
                float(c.column(k)[i]) for k in ("open", "high", "low", "close", "volume")
            )
            return f"O {o:,.2f}  H {h:,.2f}  L {lo:,.2f}  C {cl:,.2f}  V {v:,.0f}"
        ts = series.ticks.ts
        i = max(0, int(np.searchsorted(ts, x, side="right")) - 1)
        price, bid, ask = (float(series.ticks.column(k)[i]) for k in ("price", "bid", "ask"))
        return f"last {price:,.2f}  bid {bid:,.2f}  ask {ask:,.2f}"
