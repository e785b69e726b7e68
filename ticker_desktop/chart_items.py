"""pyqtgraph items drawn from the candle buffers: candlesticks, volume bars and a crosshair.

The candle and volume items draw only the candles in view, in coordinates
relative to their first candle (epoch seconds near 2e9 lose too much
precision in Qt's raster engine, which then paints degenerate bodies as huge
bars). Completed candles
never change, so their shapes are built once into :class:`QPainterPath` s
(with numpy, no per-candle Python loop) and redrawn each frame; the newest
candle, which every tick updates in place, is built afresh on top. The cached
paths are rebuilt only when the visible window of completed candles changes (a
candle completes, or the user pans).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsLineItem

from .buffers import CandleSeries
from .theme import ACCENT, BACKGROUND, DOWN, MUTED, UP

__all__ = ["CandlesItem", "Crosshair", "LastPrice", "PriceAxis", "VolumeItem"]

_Key = tuple[int, int, bool, bool]
_Array = np.ndarray[Any, np.dtype[np.float64]]
_Stroke = tuple[QPen, QBrush, QPainterPath]


class _CandleDrawing(pg.GraphicsObject):  # type: ignore[misc]
    """Shared caching and culling for items that draw one shape per candle."""

    def __init__(self) -> None:
        super().__init__()
        self.series: CandleSeries | None = None
        self.muted = False
        self._cached: list[_Stroke] = []
        self._key: _Key | None = None
        self._bounds = QRectF()
        self._origin: float | None = None
        """Epoch seconds of x = 0 in item coordinates (the first candle's start)."""

    def set_series(self, series: CandleSeries | None) -> None:
        self.series = series
        self._key = None
        self._origin = None
        self.refresh()

    def set_muted(self, muted: bool) -> None:
        """Draw in grey (while disconnected)."""
        if muted != self.muted:
            self.muted = muted
            self._key = None
            self.update()

    def refresh(self) -> None:
        """The series changed: update the bounds and schedule a repaint."""
        s = self.series
        if self._origin is None and s is not None and len(s):
            self._origin = float(s.column("t")[0])
            self.setPos(self._origin, 0.0)
        bounds = self._compute_bounds()
        if bounds != self._bounds:
            self.prepareGeometryChange()
            self._bounds = bounds
        self.update()

    def boundingRect(self) -> QRectF:
        return self._bounds

    def _compute_bounds(self) -> QRectF:
        s = self.series
        if s is None or not len(s):
            return QRectF()
        t = s.column("t")
        lo, hi = self._y_extent(s)
        left = float(t[0]) - (self._origin or 0.0) - s.interval
        return QRectF(left, lo, float(t[-1] - t[0]) + 3 * s.interval, hi - lo)

    def _y_extent(self, s: CandleSeries) -> tuple[float, float]:
        raise NotImplementedError

    def _strokes(self, s: CandleSeries, i0: int, i1: int, thin: bool) -> list[_Stroke]:
        raise NotImplementedError

    def paint(self, p: QPainter, *args: Any) -> None:
        s = self.series
        if s is None or not len(s):
            return
        view = self.viewRect()
        t = s.column("t")
        n = len(t)
        origin = self._origin or 0.0
        if view is None:
            i0, i1 = 0, n
        else:
            i0 = max(0, int(np.searchsorted(t, origin + view.left() - s.interval)))
            i1 = min(n, int(np.searchsorted(t, origin + view.right())) + 1)
        # Below ~3 px per candle the bodies are invisible: draw one stroke per candle.
        thin = s.interval / max(self.pixelWidth(), 1e-12) < 3.0
        done = min(i1, n - 1)
        key = (s.evicted + i0, s.evicted + done, thin, self.muted)
        if key != self._key:
            self._cached = self._strokes(s, i0, done, thin) if i0 < done else []
            self._key = key
        strokes = self._cached + (self._strokes(s, n - 1, n, thin) if i1 == n else [])
        for pen, brush, path in strokes:
            p.setPen(pen)
            p.setBrush(brush)
            p.drawPath(path)

    def _x(self, s: CandleSeries, i0: int, i1: int) -> _Array:
        """Candle centres in item coordinates."""
        centres: _Array = s.column("t")[i0:i1] + (s.interval / 2 - (self._origin or 0.0))
        return centres

    def _color(self, rising: bool, alpha: int = 255) -> QColor:
        color = QColor(MUTED if self.muted else UP if rising else DOWN)
        color.setAlpha(alpha)
        return color


def _segments(x0: _Array, y0: _Array, x1: _Array, y1: _Array) -> QPainterPath:
    """One path of separate line segments (x0, y0)-(x1, y1), built without a Python loop."""
    x = np.column_stack([x0, x1]).ravel()
    y = np.column_stack([y0, y1]).ravel()
    path: QPainterPath = pg.arrayToQPath(x, y, connect="pairs")
    return path


def _boxes(left: _Array, bottom: _Array, width: float, height: _Array) -> QPainterPath:
    """One path of separate rectangles, built without a Python loop."""
    right, top = left + width, bottom + height
    x = np.column_stack([left, right, right, left, left]).ravel()
    y = np.column_stack([bottom, bottom, top, top, bottom]).ravel()
    connect = np.tile(np.array([1, 1, 1, 1, 0], dtype=np.int32), len(left))
    path: QPainterPath = pg.arrayToQPath(x, y, connect=connect)
    return path


class CandlesItem(_CandleDrawing):
    """OHLC candlesticks: a wick from low to high and a body from open to close."""

    log = False
    """Draw log10 of prices (the chart's log scale)."""

    def set_log(self, log: bool) -> None:
        if log != self.log:
            self.log = log
            self._key = None
            self.refresh()

    def _y_extent(self, s: CandleSeries) -> tuple[float, float]:
        lo, hi = float(np.min(s.column("low"))), float(np.max(s.column("high")))
        return (float(np.log10(lo)), float(np.log10(hi))) if self.log else (lo, hi)

    def _strokes(self, s: CandleSeries, i0: int, i1: int, thin: bool) -> list[_Stroke]:
        t = self._x(s, i0, i1)
        o, h = s.column("open")[i0:i1], s.column("high")[i0:i1]
        lo, c = s.column("low")[i0:i1], s.column("close")[i0:i1]
        if self.log:
            o, h, lo, c = np.log10(o), np.log10(h), np.log10(lo), np.log10(c)
        half = s.interval * 0.35
        rising = c >= o
        strokes: list[_Stroke] = []
        for flag in (True, False):
            sel = rising == flag
            if not sel.any():
                continue
            color = self._color(flag)
            pen = pg.mkPen(color, width=1)
            strokes.append(
                (pen, QBrush(Qt.BrushStyle.NoBrush), _segments(t[sel], lo[sel], t[sel], h[sel]))
            )
            if thin:
                continue
            bottom = np.minimum(o[sel], c[sel])
            # A doji still gets a visible 1 px body: the pen outlines a zero-height box.
            body = _boxes(t[sel] - half, bottom, 2 * half, np.abs(c[sel] - o[sel]))
            strokes.append((pen, QBrush(color), body))
        return strokes


class VolumeItem(_CandleDrawing):
    """Volume bars per candle, coloured by the candle's direction."""

    def _y_extent(self, s: CandleSeries) -> tuple[float, float]:
        return 0.0, float(np.max(s.column("volume")))

    def _strokes(self, s: CandleSeries, i0: int, i1: int, thin: bool) -> list[_Stroke]:
        t = self._x(s, i0, i1)
        v = s.column("volume")[i0:i1].astype(np.float64)
        rising = s.column("close")[i0:i1] >= s.column("open")[i0:i1]
        half = s.interval * 0.4
        strokes: list[_Stroke] = []
        for flag in (True, False):
            sel = rising == flag
            if not sel.any():
                continue
            color = self._color(flag, alpha=150)
            zeros = np.zeros(int(sel.sum()))
            if thin:
                strokes.append(
                    (
                        pg.mkPen(color, width=1),
                        QBrush(Qt.BrushStyle.NoBrush),
                        _segments(t[sel], zeros, t[sel], v[sel]),
                    )
                )
            else:
                strokes.append(
                    (
                        QPen(Qt.PenStyle.NoPen),
                        QBrush(color),
                        _boxes(t[sel] - half, zeros, 2 * half, v[sel]),
                    )
                )
        return strokes


class Crosshair:
    """Dashed cross lines following the mouse over a plot, with a time and price readout.

    Args:
        plot: the plot to track.
        describe: given the time under the cursor, more readout text (OHLC, bid/ask).
    """

    def __init__(self, plot: pg.PlotItem, describe: Callable[[float], str]) -> None:
        self._plot = plot
        self._describe = describe
        pen = pg.mkPen(MUTED, width=1, style=Qt.PenStyle.DashLine)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        self.readout = pg.TextItem(color=MUTED, anchor=(1, 0))
        # Parented to the view box itself (not its data group) so it stays in the corner.
        self.readout.setParentItem(plot.vb)
        for line in (self.vline, self.hline):
            plot.addItem(line, ignoreBounds=True)
            line.setZValue(50)
        self.log = False
        """The plot's y is log10 of the price."""
        self.set_visible(False)
        self._proxy = pg.SignalProxy(plot.scene().sigMouseMoved, rateLimit=60, slot=self._moved)

    def set_visible(self, visible: bool) -> None:
        for item in (self.vline, self.hline, self.readout):
            item.setVisible(visible)

    def _moved(self, event: tuple[QPointF]) -> None:
        pos = event[0]
        vb = self._plot.vb
        if not vb.sceneBoundingRect().contains(pos):
            self.set_visible(False)
            return
        point = vb.mapSceneToView(pos)
        self.vline.setPos(point.x())
        self.hline.setPos(point.y())
        stamp = time.strftime("%H:%M:%S", time.localtime(point.x()))
        extra = self._describe(point.x())
        price = 10 ** point.y() if self.log else point.y()
        self.readout.setText(f"{stamp}   {price:,.2f}" + (f"\n{extra}" if extra else ""))
        self.readout.setPos(vb.width() - 8, 4)
        self.set_visible(True)


class PriceAxis(pg.AxisItem):  # type: ignore[misc]
    """A price axis whose labels all carry the same decimals (2, or 4 below 1.0).

    With ``volume=True`` it labels share counts compactly instead (12k, 1.5M).
    """

    def __init__(self, orientation: str = "right", volume: bool = False) -> None:
        super().__init__(orientation)
        self.volume = volume
        self.log = False
        """Values are log10 of prices: ticks at round prices, labelled as prices."""
        self.percent = False
        """Values are percent changes (a comparison): labelled +0.25%."""

    def set_percent(self, percent: bool) -> None:
        if percent != self.percent:
            self.percent = percent
            self.picture = None
            self.update()

    def set_log(self, log: bool) -> None:
        if log != self.log:
            self.log = log
            self.picture = None
            self.update()

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[Any]:
        if not self.log or self.volume:
            return super().tickValues(minVal, maxVal, size)  # type: ignore[no-any-return]
        lo, hi = 10.0**minVal, 10.0**maxVal
        levels = super().tickValues(lo, hi, size)
        return [(spacing, [math.log10(v) for v in values if v > 0]) for spacing, values in levels]

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:
        levels: list[tuple[float, float]] = super().tickSpacing(minVal, maxVal, size)
        if self.volume:
            return levels
        # No ticks finer than a cent: prices move in cents, a half-cent label misleads.
        cent = 0.01 if max(abs(minVal), abs(maxVal)) >= 1.0 else 0.0001
        kept = [(spacing, offset) for spacing, offset in levels if spacing >= cent * 0.999]
        return kept or [(cent, 0.0)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if self.volume:
            return [_compact(v * scale) for v in values]
        if self.percent:
            return [f"{v * scale:+.2f}%" for v in values]
        if self.log:
            values = [10.0**v for v in values]
        top = max((abs(v) for v in values), default=0.0)
        decimals = 2 if top >= 1.0 else 4
        return [f"{v * scale:,.{decimals}f}" for v in values]


def _compact(value: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.0f}"


class LastPrice:
    """A dotted line at the last price and, optionally, the price boxed at the right edge.

    Unlike :class:`pyqtgraph.InfiniteLine`, whose bounds follow the view and are
    recomputed while painting (which schedules a second paint per frame), its
    geometry is only set by :meth:`show`, from the refresh.
    """

    def __init__(self, plot: pg.PlotItem, labelled: bool, compact: bool = False) -> None:
        self._plot = plot
        self._vb = plot.vb
        # A plain Qt line item: no Python bounds computation on every repaint.
        self.line = QGraphicsLineItem()
        self.line.setPen(pg.mkPen(ACCENT, width=1, style=Qt.PenStyle.DotLine))
        plot.addItem(self.line, ignoreBounds=True)
        self.label: pg.TextItem | None = None
        if labelled:
            # On the price axis, like a trading terminal's last-price tag.
            self.label = pg.TextItem(color=BACKGROUND, fill=pg.mkBrush(ACCENT), anchor=(0, 0.5))
            if compact:
                font = QFont()
                font.setPointSize(7)
                self.label.setFont(font)
            self.label.setParentItem(plot)
            self.label.setZValue(60)
        self._text = ""
        self.hide()

    def show(self, x0: float, x1: float, price: float, y: float | None = None) -> None:
        """Draw the line across [x0, x1] (with room to pan) at ``price`` (at ``y`` if the
        plot's y is not the price itself: a log scale)."""
        margin = 10 * (x1 - x0)
        at = price if y is None else y
        self.line.setLine(x0 - margin, at, x1 + margin, at)
        self.line.setVisible(True)
        if self.label is not None:
            y = self._vb.mapFromView(QPointF(x1, at)).y()
            box = self._vb.geometry()
            self.label.setPos(box.right() + 1, box.top() + y)
            text = f"{price:,.2f}"
            if text != self._text:
                self._text = text
                self.label.setText(text)
            self.label.setVisible(0 <= y <= box.height())

    def hide(self) -> None:
        self.line.setVisible(False)
        if self.label is not None:
            self.label.setVisible(False)
