"""Curve items for live charts: a price curve that re-clips once per frame, and indicator lines.

Both exist because a live chart changes every frame: :class:`LiveCurve` takes a
new view range and new data with one re-clip instead of two, and
:class:`LinesItem` draws many indicator lines without a ``setData`` each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QPainter, QPen

__all__ = ["LinesItem", "LiveCurve"]

_Array = np.ndarray[Any, np.dtype[np.float64]]


class LiveCurve(pg.PlotDataItem):  # type: ignore[misc]
    """A PlotDataItem that can take a new view range and new data with one re-clip.

    PlotDataItem re-clips and re-downsamples on every view-range change and
    again on every ``setData``; a live pane does both each frame. Inside
    :meth:`deferring_range_changes` range changes only mark the curve, and the
    work is done once: by ``setData`` if it is called, else on leaving.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Peak downsampling keeps each bucket's high and low: ~2 buckets per pixel show every
        # spike; pyqtgraph's default of 5 only adds points the eye cannot see.
        self.opts["autoDownsampleFactor"] = 2.0
        # The y range always fits the data in view, so points are never millions of view
        # heights away; the guard against that costs a min and max over all data per setData.
        self.setDynamicRangeLimit(None)
        self._deferring = False
        self._missed = False

    @contextlib.contextmanager
    def deferring_range_changes(self) -> Iterator[None]:
        self._deferring, self._missed = True, False
        try:
            yield
        finally:
            self._deferring = False
            if self._missed:
                super().viewRangeChanged()

    def setData(self, *args: Any, **kwargs: Any) -> None:
        self._missed = False  # setData clips for the current range anyway
        super().setData(*args, **kwargs)

    def updateItems(self, styleUpdate: bool = True) -> None:
        dataset = getattr(self, "_dataset", None)
        if dataset is not None and self.opts["skipFiniteCheck"]:
            # Data vouched finite (setSkipFiniteCheck) is still scanned for NaN on every
            # setData unless its dataset is told so: a pass and a copy of all data held.
            dataset.xAllFinite = dataset.yAllFinite = True
        super().updateItems(styleUpdate)

    def viewRangeChanged(self, vb: Any = None, ranges: Any = None, changed: Any = None) -> None:
        if self._deferring:
            self._missed = True
            return
        super().viewRangeChanged(vb, ranges, changed)


class LinesItem(pg.GraphicsObject):  # type: ignore[misc]
    """Several lines drawn straight from zero-copy numpy views, only the part in view.

    Indicator lines change every frame on every chart; a curve item per line would
    cost a ``setData`` each (about a millisecond of Python apiece). This item is
    handed the views and only builds paths when it paints: for each line the rows
    in view, thinned to about two points per pixel (indicator lines are smooth),
    NaN rows left as gaps. Coordinates are relative to the first x, as the candles'.
    """

    _HUGE = QRectF(-1e12, -1e12, 2e12, 2e12)

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[QPen, _Array, _Array]] = []
        self.log = False
        """Draw log10 of the values (the price plot's log scale)."""
        self._origin: float | None = None

    def set_lines(self, lines: list[tuple[QPen, _Array, _Array]]) -> None:
        """Draw ``lines`` (pen, x, y), each x ascending; takes effect at the next paint."""
        self.lines = lines
        if self._origin is None and lines and len(lines[0][1]):
            self._origin = float(lines[0][1][0])
            self.setPos(self._origin, 0.0)
        self.update()

    def boundingRect(self) -> QRectF:
        # The view box clips to itself; a fixed rect never re-indexes the scene per frame.
        return self._HUGE

    def paint(self, p: QPainter, *args: Any) -> None:
        view = self.viewRect()
        if view is None or not self.lines:
            return
        origin = self._origin or 0.0
        left, right = origin + view.left(), origin + view.right()
        pixel = max(self.pixelWidth(), 1e-12)
        # One point per pixel: indicator lines are smooth, a second point per pixel adds nothing.
        points = max(2, int(view.width() / pixel))
        for pen, x, y in self.lines:
            n = min(len(x), len(y))
            if n < 2:
                continue
            i0 = max(0, int(np.searchsorted(x[:n], left)) - 1)
            i1 = min(n, int(np.searchsorted(x[:n], right)) + 1)
            step = max(1, (i1 - i0) // points)
            xs, ys = x[i0:i1:step], y[i0:i1:step]
            if len(xs) < 2:
                continue
            if self.log:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ys = np.log10(ys)
            # NaN rows (a log of nothing, an undefined row) need the slower gap-aware builder.
            connect = "finite" if np.isnan(ys[0]) or np.isnan(ys[-1]) else "all"
            p.setPen(pen)
            p.drawPath(pg.arrayToQPath(xs - origin, ys, connect=connect))
