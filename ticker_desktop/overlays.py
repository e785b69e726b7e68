"""What a pane draws over its price: indicators, an oscillator pane, alert levels, comparisons.

Each is refreshed by the pane's own refresh (so by the window's one frame timer),
never per tick. Indicators are :class:`~.indicators.Indicator` objects that only
compute the newest rows; their curves get one ``setData`` of a zero-copy view
per frame, clipped and downsampled like the price curve. A mode or interval
change gives the indicators a new series, so they make one full pass over it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsLineItem

from .curves import LinesItem, LiveCurve, Rows
from .indicators import LOWER_KINDS, Indicator, IndicatorSpec
from .store import SymbolSeries
from .theme import ACCENT, DOWN, MUTED, UP

__all__ = ["AlertLines", "Comparison", "IndicatorOverlay", "indicator_color"]

_PALETTE = ["#ffb74d", "#ba68c8", "#4dd0e1", "#aed581", "#f06292", "#90a4ae"]
_FIXED = {"vwap": "#e0e0e0", "bollinger": "#7986cb", "rsi": "#ce93d8", "macd": "#4fc3f7"}


_WARMUP = {"bollinger": 19, "rsi": 14, "ema": 0, "vwap": 0, "macd": 0}
"""Leading rows each kind leaves undefined (SMA: its period less one)."""


def indicator_color(spec: IndicatorSpec, index: int) -> QColor:
    """The colour of an indicator's line: fixed for the textbook ones, from a palette for MAs."""
    return QColor(_FIXED.get(spec.kind, _PALETTE[index % len(_PALETTE)]))


class IndicatorOverlay:
    """The indicators of one pane: their state and their lines over the price and below it.

    Args:
        plot: the price plot.
        lower: the oscillator plot (RSI, MACD), or None for a pane without one (grid charts).
    """

    def __init__(self, plot: pg.PlotItem, lower: pg.PlotItem | None = None) -> None:
        self.plot = plot
        self.lower = lower
        self.specs: list[IndicatorSpec] = []
        self.indicators: dict[IndicatorSpec, Indicator] = {}
        self.pens: dict[IndicatorSpec, list[QPen]] = {}
        self.upper_lines = LinesItem()
        plot.addItem(self.upper_lines, ignoreBounds=True)
        self.lower_lines = LinesItem()
        if lower is not None:
            lower.addItem(self.lower_lines, ignoreBounds=True)
        self._source: object | None = None
        self._levels: list[pg.InfiniteLine] = []
        self._band: tuple[Any, Any, Any] | None = None

    def set_specs(self, specs: list[IndicatorSpec]) -> None:
        """Draw exactly ``specs`` (oscillators only where there is a lower plot)."""
        wanted = [s for s in specs if s.kind not in LOWER_KINDS or self.lower is not None]
        for spec in [s for s in self.specs if s not in wanted]:
            self.pens.pop(spec, None)
            self.indicators.pop(spec, None)
        for index, spec in enumerate(wanted):
            if spec not in self.pens:
                self.pens[spec] = self._make_pens(spec, index)
        self.specs = wanted
        if not wanted:
            self.upper_lines.set_lines([])
            self.lower_lines.set_lines([])
        self._show_lower()

    def has_lower(self) -> bool:
        return any(s.kind in LOWER_KINDS for s in self.specs)

    @staticmethod
    def _make_pens(spec: IndicatorSpec, index: int) -> list[QPen]:
        color = indicator_color(spec, index)
        if spec.kind == "bollinger":
            faint = QColor(color)
            faint.setAlpha(170)
            return [
                pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine),
                pg.mkPen(faint, width=1),
                pg.mkPen(faint, width=1),
            ]
        # 1 px, not wider: Qt draws thin pens on its fast path, about 3x cheaper per line,
        # and 20 charts of indicators must still refresh 60 times a second.
        if spec.kind == "macd":
            return [pg.mkPen(color, width=1), pg.mkPen(ACCENT, width=1), pg.mkPen(MUTED, width=1)]
        return [pg.mkPen(color, width=1)]

    def _show_lower(self) -> None:
        if self.lower is None:
            return
        self.lower.setVisible(self.has_lower())
        for line in self._levels:
            self.lower.removeItem(line)
        self._levels = []
        if any(s.kind == "rsi" for s in self.specs):
            for level in (30.0, 70.0):
                line = pg.InfiniteLine(
                    pos=level, angle=0, pen=pg.mkPen(MUTED, width=1, style=Qt.PenStyle.DotLine)
                )
                self.lower.addItem(line, ignoreBounds=True)
                self._levels.append(line)

    def reset(self) -> None:
        """Forget every indicator's outputs: the next refresh makes one full pass (history load)."""
        for indicator in self.indicators.values():
            indicator.reset()

    def refresh(self, series: SymbolSeries, mode: str, interval: float) -> None:
        """Bring every indicator up to date with the pane's series and hand the lines its views."""
        if not self.specs:
            return
        if mode == "candles":
            candles = series.candles[interval]
            source: object = candles
            x, volume, t = candles.column("close"), candles.column("volume"), candles.column("t")
            evicted, capacity = candles.evicted, candles.capacity
            xs = t + interval / 2
        else:
            ticks = series.ticks
            source = ticks
            x, volume, t = ticks.price, ticks.column("size"), ticks.ts
            evicted, capacity = ticks.evicted, ticks.capacity
            xs = t
        if source is not self._source:
            self._source = source
            self.indicators.clear()
        if not len(x):
            return
        upper: list[tuple[QPen, Any, Any]] = []
        lower: list[tuple[QPen, Any, Any]] = []
        upper_rows: list[Rows | None] = []
        lower_rows: list[Rows | None] = []
        self._band = None
        for spec in self.specs:
            indicator = self.indicators.get(spec)
            if indicator is None:
                indicator = self.indicators[spec] = Indicator(spec, capacity)
            indicator.update(x, volume, t, evicted)
            target = lower if spec.kind in LOWER_KINDS else upper
            if spec.kind == "bollinger":
                self._band = (xs, indicator.column("upper"), indicator.column("lower"))
            # Past the rows an indicator leaves undefined, so the lines hold no NaN.
            skip = min(len(xs), _WARMUP.get(spec.kind, max(spec.period - 1, 0)))
            line_x = xs[skip:]
            rows = lower_rows if spec.kind in LOWER_KINDS else upper_rows
            for pen, line in zip(self.pens[spec], indicator.lines, strict=True):
                target.append((pen, line_x, indicator.column(line)[skip:]))
                # Only the newest row of an indicator changes, until its next full pass.
                rows.append(Rows(evicted + skip, (indicator, line), indicator.full_passes))
        self.upper_lines.set_lines(upper, upper_rows)
        self.lower_lines.set_lines(lower, lower_rows)

    def band_range(self, x0: float, x1: float) -> tuple[float, float] | None:
        """Low and high of the Bollinger bands in [x0, x1], so the price axis can fit them."""
        if self._band is None or not any(s.kind == "bollinger" for s in self.specs):
            return None
        xs, up, down = self._band
        i0, i1 = np.searchsorted(xs, [x0, x1])
        hi, lo = up[i0:i1], down[i0:i1]
        if not len(hi) or np.isnan(hi[-1]):
            return None
        if np.isnan(hi[0]):
            # Only the first rows are undefined: the plain reductions below are much cheaper.
            return float(np.nanmin(lo)), float(np.nanmax(hi))
        return float(lo.min()), float(hi.max())

    def lower_range(self, x0: float, x1: float) -> tuple[float, float] | None:
        """The y range of the oscillators within [x0, x1] (RSI is always 0 to 100)."""
        if any(s.kind == "rsi" for s in self.specs):
            return (0.0, 100.0)
        lo, hi = math.inf, -math.inf
        for _, xs, ys in self.lower_lines.lines:
            i0, i1 = np.searchsorted(xs, [x0, x1])
            window = ys[i0:i1]
            if len(window) and not np.isnan(window).all():
                lo, hi = min(lo, float(np.nanmin(window))), max(hi, float(np.nanmax(window)))
        if not math.isfinite(lo):
            return None
        pad = max((hi - lo) * 0.1, 1e-6)
        return lo - pad, hi + pad


class AlertLines:
    """Dashed lines at the levels of a symbol's waiting alerts (plain Qt line items: no
    bounds work on every repaint), with the level written at the right edge."""

    def __init__(self, plot: pg.PlotItem, labelled: bool) -> None:
        self._plot = plot
        self._labelled = labelled
        self._items: dict[int, tuple[QGraphicsLineItem, pg.TextItem | None]] = {}
        self.levels: dict[int, tuple[float, str]] = {}

    def set_levels(self, levels: Mapping[int, tuple[float, str]]) -> None:
        """Show exactly ``levels``: alert id -> (level, condition)."""
        for alert_id in [i for i in self._items if i not in levels]:
            line, label = self._items.pop(alert_id)
            self._plot.removeItem(line)
            if label is not None:
                self._plot.removeItem(label)
        for alert_id, (level, condition) in levels.items():
            if alert_id in self._items:
                continue
            color = UP if condition == "above" else DOWN
            line = QGraphicsLineItem()
            line.setPen(pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine))
            line.setZValue(40)
            self._plot.addItem(line, ignoreBounds=True)
            label = None
            if self._labelled:
                arrow = "▲" if condition == "above" else "▼"
                label = pg.TextItem(f"{arrow} alert {level:,.2f}", color=color, anchor=(1, 1))
                self._plot.addItem(label, ignoreBounds=True)
            self._items[alert_id] = (line, label)
        self.levels = dict(levels)

    def set_visible(self, visible: bool) -> None:
        for line, label in self._items.values():
            line.setVisible(visible)
            if label is not None:
                label.setVisible(visible)

    def show(self, x0: float, x1: float, log: bool = False) -> None:
        """Lay the lines across [x0, x1] (with room to pan); at log10 of the levels if ``log``."""
        margin = 10 * (x1 - x0)
        for alert_id, (line, label) in self._items.items():
            level = self.levels[alert_id][0]
            if log:
                level = math.log10(level)
            line.setLine(x0 - margin, level, x1 + margin, level)
            if label is not None:
                label.setPos(x0 + (x1 - x0) * 0.82, level)


class Comparison:
    """Other symbols over the main chart as percent change from the left edge of the view.

    While it shows any, the price curve itself is drawn the same way, so all share one
    percent axis; the pane asks :meth:`transform` for its own curve's data.
    """

    COLORS = ("#ffb74d", "#ba68c8", "#aed581", "#f06292")

    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot = plot
        self.curves: dict[str, LiveCurve] = {}
        self.labels: dict[str, pg.TextItem] = {}

    @property
    def active(self) -> bool:
        return bool(self.curves)

    def set_symbols(self, symbols: list[str]) -> None:
        for symbol in [s for s in self.curves if s not in symbols]:
            self.plot.removeItem(self.curves.pop(symbol))
            self.plot.removeItem(self.labels.pop(symbol))
        for symbol in symbols:
            if symbol in self.curves:
                continue
            color = QColor(self.COLORS[len(self.curves) % len(self.COLORS)])
            curve = LiveCurve(pen=pg.mkPen(color, width=1.2))
            curve.setSkipFiniteCheck(True)
            self.plot.addItem(curve)
            self.curves[symbol] = curve
            label = pg.TextItem(symbol, color=color, anchor=(1, 1))
            self.plot.addItem(label, ignoreBounds=True)
            self.labels[symbol] = label

    @staticmethod
    def percent(ts: np.ndarray[Any, Any], price: np.ndarray[Any, Any], x0: float) -> Any:
        """Percent change of ``price`` from its value at the left edge ``x0``."""
        if not len(price):
            return price
        i = min(int(np.searchsorted(ts, x0)), len(price) - 1)
        base = float(price[i]) or 1.0
        return (price / base - 1.0) * 100.0

    def refresh(self, store: Any, x0: float, x1: float) -> tuple[float, float] | None:
        """Redraw each compared symbol; returns the y range of them all within the view."""
        lo, hi = math.inf, -math.inf
        for symbol, curve in self.curves.items():
            series = store.get(symbol)
            if series is None or not len(series.ticks):
                continue
            ts, price = series.ticks.ts, series.ticks.price
            pct = self.percent(ts, price, x0)
            curve.setData(ts, pct)
            i0, i1 = np.searchsorted(ts, [x0, x1])
            window = pct[max(0, i0 - 1) : i1 + 1]
            if len(window):
                lo, hi = min(lo, float(window.min())), max(hi, float(window.max()))
                self.labels[symbol].setPos(x1, float(pct[min(i1, len(pct)) - 1]))
                self.labels[symbol].setText(f"{symbol} {float(pct[min(i1, len(pct)) - 1]):+.2f}%")
        return None if not math.isfinite(lo) else (lo, hi)
