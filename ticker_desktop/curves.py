"""Curve items for live charts: a price curve that re-clips once per frame, and indicator lines.

Both exist because a live chart changes every frame: :class:`LiveCurve` takes a
new view range and new data with one re-clip instead of two, and
:class:`LinesItem` draws many indicator lines without a ``setData`` each.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QPainter, QPainterPath, QPen

__all__ = ["LinesItem", "LiveCurve", "Rows"]

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


@dataclass(frozen=True, slots=True)
class Rows:
    """Where a line's rows come from, so that :class:`LinesItem` can keep its finished part.

    A line's rows are final except its last one (an open candle changes in place),
    until ``source`` recomputes them all (a full pass bumps ``generation``).
    """

    first: int
    """The absolute index of the line's row 0 (rows evicted before it, plus rows skipped)."""
    source: object
    """What computes the values (an indicator and its column): compared with ``==``, so
    another source means other values."""
    generation: int
    """Bumped by ``source`` whenever it may have rewritten finished rows."""


class _Path:
    """The cached path of one line: its samples from absolute row ``a`` to ``b``, every
    ``step`` rows (aligned to multiples of ``step``, so a frame extends it, never shifts it)."""

    __slots__ = ("a", "b", "end", "generation", "log", "path", "source", "step")

    def __init__(self, rows: Rows | None, log: bool, step: int) -> None:
        self.source = None if rows is None else rows.source
        self.generation = -1 if rows is None else rows.generation
        self.log = log
        self.step = step
        self.a = self.b = -1
        self.end = QPointF()
        """The last sample (row ``b``) in item coordinates, where the next one joins."""
        self.path = QPainterPath()

    def fits(self, rows: Rows | None, log: bool, ideal: int) -> bool:
        """Whether this cache drew the same values at about the density wanted now."""
        return (
            rows is not None
            and rows.source == self.source
            and rows.generation == self.generation
            and log == self.log
            # Hysteresis: a view that holds a few rows more or less keeps its samples.
            and 3 * self.step <= 4 * ideal
            and 4 * ideal <= 5 * self.step
        )


class LinesItem(pg.GraphicsObject):  # type: ignore[misc]
    """Several lines drawn straight from zero-copy numpy views, only the part in view.

    Indicator lines change every frame on every chart; a curve item per line would
    cost a ``setData`` each (about a millisecond of Python apiece). This item is
    handed the views and draws, for each line, the rows in view thinned to about
    one point per pixel (indicator lines are smooth), NaN rows left as gaps.
    Coordinates are relative to the first x, as the candles'.

    A line handed with its :class:`Rows` keeps the path of its finished rows from
    frame to frame, sampled at rows that are multiples of the thinning step, so a
    frame only appends the samples that finished since and draws a segment to the
    newest row. The path is rebuilt when the values may have changed (another
    source or generation, the log scale), when the step must change (a zoom), or
    when the view has moved half a width away from what it covers (a pan, scrolling).
    """

    _HUGE = QRectF(-1e12, -1e12, 2e12, 2e12)

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[QPen, _Array, _Array]] = []
        self.rows: list[Rows | None] = []
        self.log = False
        """Draw log10 of the values (the price plot's log scale)."""
        self._origin: float | None = None
        self._paths: list[_Path | None] = []
        self.rebuilds = 0
        """Cached paths built from scratch (tests read it to see the cache hold)."""

    def set_lines(
        self, lines: list[tuple[QPen, _Array, _Array]], rows: list[Rows | None] | None = None
    ) -> None:
        """Draw ``lines`` (pen, x, y), each x ascending; takes effect at the next paint.

        Args:
            lines: the lines, in drawing order.
            rows: where each line's rows come from; a line without is drawn afresh each paint.
        """
        self.lines = lines
        self.rows = list(rows) if rows is not None else [None] * len(lines)
        if len(self._paths) != len(lines):
            self._paths = [None] * len(lines)
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
        shared: tuple[int, int, int, int] | None = None
        edges = np.array([left, right])
        for k, (pen, x, y) in enumerate(self.lines):
            n = min(len(x), len(y))
            if n < 2:
                continue
            # Lines over the same x rows (those of one series) share its search.
            if shared is not None and shared[0] == id(x) and shared[1] == n:
                i0, i1 = shared[2], shared[3]
            else:
                lo, hi = np.searchsorted(x[:n], edges).tolist()
                i0, i1 = max(0, lo - 1), min(n, hi + 1)
                shared = (id(x), n, i0, i1)
            if i1 - i0 < 2:
                continue
            p.setPen(pen)
            self._draw(p, k, x, y, n, i0, i1, points, origin)

    def _draw(
        self, p: QPainter, k: int, x: _Array, y: _Array, n: int, i0: int, i1: int, points: int,
        origin: float,
    ) -> None:  # fmt: skip
        rows = self.rows[k] if k < len(self.rows) else None
        first = rows.first if rows is not None else 0
        ideal = max(1, (i1 - i0) // points)
        cache = self._paths[k] if k < len(self._paths) else None
        if cache is None or not cache.fits(rows, self.log, ideal):
            cache = _Path(rows, self.log, ideal)
            if rows is not None and k < len(self._paths):
                self._paths[k] = cache
        step, margin = cache.step, (i1 - i0) // 2
        a0, a1 = first + i0, first + i1 - 1  # absolute rows of the view, one beyond each edge
        lo = max(first, a0 - a0 % step)
        finished = first + n - 2  # every row but the newest is final
        hi = min(finished - finished % step, a1 + (-a1) % step)
        if cache.a < first or not lo - margin <= cache.a <= lo or cache.b > hi + margin:
            cache.a = cache.b = -1
            cache.path = QPainterPath()
        path = cache.path
        if hi >= lo:
            if cache.a < 0:
                self.rebuilds += rows is not None
                path = cache.path = self._samples(x, y, first, lo, hi, step, origin, cache)
                cache.a = lo
            elif cache.b < hi:
                self._extend(x, y, first, hi, origin, cache)
                path = cache.path
        else:
            path = QPainterPath()
        if i1 == n:
            # The newest row joins on at the end (a copy: the cache keeps finished rows only).
            path = self._tail(x, y, first, n, i0, origin, cache, QPainterPath(path))
        if not path.isEmpty():
            p.drawPath(path)

    def _tail(
        self, x: _Array, y: _Array, first: int, n: int, i0: int, origin: float, cache: _Path,
        path: QPainterPath,
    ) -> QPainterPath:  # fmt: skip
        """``path`` continued through the rows after its last sample to the newest row."""
        step = cache.step
        start = cache.b + step if cache.b >= 0 and not path.isEmpty() else first + i0
        tail = list(range(start - first, n - 1, step))
        tail.append(n - 1)
        if len(tail) <= 4:
            # A frame's usual tail, the newest row alone: numpy's per-call cost would dominate.
            xs = [float(x[i]) - origin for i in tail]
            ys = [_log10(float(y[i])) if self.log else float(y[i]) for i in tail]
        else:
            xs, ys = (x[tail] - origin).tolist(), self._y(y[tail]).tolist()
        joined = not path.isEmpty() and not math.isnan(cache.end.y())
        for px, py in zip(xs, ys, strict=True):
            if math.isnan(py):
                joined = False
            elif joined:
                path.lineTo(px, py)
            else:
                path.moveTo(px, py)
                joined = True
        return path

    def _y(self, ys: _Array) -> _Array:
        if not self.log:
            return ys
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(ys)

    def _samples(
        self, x: _Array, y: _Array, first: int, lo: int, hi: int, step: int, origin: float,
        cache: _Path,
    ) -> QPainterPath:  # fmt: skip
        """The path through rows ``lo`` to ``hi`` (absolute), the first row and every ``step``."""
        start = lo + (-lo) % step
        index = np.arange(start, hi + 1, step) - first
        if lo != start:
            index = np.insert(index, 0, lo - first)
        xs, ys = x[index] - origin, self._y(y[index])
        cache.b = hi
        cache.end = QPointF(float(xs[-1]), float(ys[-1]))
        if len(xs) < 2:
            path = QPainterPath()
            path.moveTo(cache.end)
            return path
        return _path(xs, ys)

    def _extend(
        self, x: _Array, y: _Array, first: int, hi: int, origin: float, cache: _Path
    ) -> None:
        """Append the samples after row ``cache.b`` up to ``hi`` to the cached path."""
        index = np.arange(cache.b + cache.step, hi + 1, cache.step) - first
        xs, ys = x[index] - origin, self._y(y[index])
        if np.isnan(ys).any() or np.isnan(cache.end.y()):
            # A gap: the cheap way below would join across it.
            cache.path.connectPath(
                _path(np.insert(xs, 0, cache.end.x()), np.insert(ys, 0, cache.end.y()))
            )
        else:
            for px, py in zip(xs.tolist(), ys.tolist(), strict=True):
                cache.path.lineTo(px, py)
        cache.b = hi
        cache.end = QPointF(float(xs[-1]), float(ys[-1]))


def _log10(value: float) -> float:
    """As ``np.log10`` of a price (NaN, a gap, where a price is not positive)."""
    return math.log10(value) if value > 0 else math.nan


def _path(xs: _Array, ys: _Array) -> QPainterPath:
    # NaN rows (a log of nothing, an undefined row) need the slower gap-aware builder.
    connect = "finite" if np.isnan(ys).any() else "all"
    path: QPainterPath = pg.arrayToQPath(xs, ys, connect=connect)
    return path
