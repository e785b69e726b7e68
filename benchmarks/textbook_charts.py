"""The desktop benchmark's baseline: live charts done the textbook way, untuned.

What pyqtgraph's own examples (``scrollingPlots.py``, ``PlotSpeedTest.py``) teach, one
:class:`pyqtgraph.PlotWidget` per symbol: a numpy ring buffer per chart, one repaint
timer, one ``setData`` per changed curve, ``setClipToView(True)``, peak downsampling,
a :class:`pyqtgraph.DateAxisItem`, and auto-range left on (the default). Issue 6 asks
for ours to be measured next to this, in the same run.

Only the callbacks are additions: they tell the benchmark when curves got data and how
long each refresh pass and each paint took.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QGridLayout, QWidget

__all__ = ["RingBuffer", "TextbookDashboard"]

_Array = np.ndarray[Any, np.dtype[np.float64]]


class RingBuffer:
    """The newest ``capacity`` (x, y) points, contiguous, in arrays twice that long.

    Appends go at the end; when the end is reached the newest points move to the
    front in one copy, so a curve always gets a zero-copy view.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._x = np.zeros(2 * capacity)
        self._y = np.zeros(2 * capacity)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def extend(self, x: _Array, y: _Array) -> None:
        """Append points (oldest first), dropping the oldest beyond ``capacity``."""
        x, y = x[-self.capacity :], y[-self.capacity :]
        n = len(x)
        if self._end + n > len(self._x):
            keep = min(len(self), self.capacity - n)
            for array in (self._x, self._y):
                array[:keep] = array[self._end - keep : self._end]
            self._start, self._end = 0, keep
        self._x[self._end : self._end + n] = x
        self._y[self._end : self._end + n] = y
        self._end += n
        self._start = max(self._start, self._end - self.capacity)

    @property
    def x(self) -> _Array:
        return self._x[self._start : self._end]

    @property
    def y(self) -> _Array:
        return self._y[self._start : self._end]


class _TimedPlotWidget(pg.PlotWidget):  # type: ignore[misc]
    """A PlotWidget that reports the duration of each of its paints."""

    def __init__(self, index: int, on_paint: Callable[[int, float], None], **kwargs: Any):
        super().__init__(**kwargs)
        self.index = index
        self.on_paint = on_paint

    def paintEvent(self, event: QPaintEvent) -> None:
        started = time.perf_counter()
        super().paintEvent(event)
        self.on_paint(self.index, time.perf_counter() - started)


class TextbookDashboard(QWidget):
    """One PlotWidget per symbol in a grid, one timer repainting the charts that changed.

    Args:
        symbols: one chart each, in grid order.
        capacity: points held per chart.
        frame_ms: the repaint timer's period.
        on_data: called with (chart, newest x) after a curve's ``setData``.
        on_refresh: called with the duration of each repaint pass that set data.
        on_paint: called with (chart, duration) after each widget's paint.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        capacity: int,
        frame_ms: int,
        on_data: Callable[[int, float], None],
        on_refresh: Callable[[float], None],
        on_paint: Callable[[int, float], None],
    ) -> None:
        super().__init__()
        self.setWindowTitle("textbook pyqtgraph baseline")
        self.on_data = on_data
        self.on_refresh = on_refresh
        self.buffers = [RingBuffer(capacity) for _ in symbols]
        self.curves: list[pg.PlotDataItem] = []
        self.dirty: set[int] = set()
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        cols = max(1, math.ceil(math.sqrt(len(symbols))))
        for index, symbol in enumerate(symbols):
            widget = _TimedPlotWidget(
                index, on_paint, axisItems={"bottom": pg.DateAxisItem(orientation="bottom")}
            )
            plot = widget.getPlotItem()
            plot.setTitle(symbol)
            curve = plot.plot(pen="y")
            plot.setClipToView(True)
            plot.setDownsampling(auto=True, mode="peak")
            layout.addWidget(widget, *divmod(index, cols))
            self.curves.append(curve)
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self.repaint_charts)
        self.timer_ms = frame_ms

    def start(self) -> None:
        self.timer.start(self.timer_ms)

    def stop(self) -> None:
        self.timer.stop()

    def append(self, chart: int, x: _Array, y: _Array) -> None:
        """New points for one chart; drawn by the next timer tick."""
        self.buffers[chart].extend(x, y)
        self.dirty.add(chart)

    def repaint_charts(self) -> None:
        if not self.dirty:
            return
        started = time.perf_counter()
        for chart in sorted(self.dirty):
            buffer = self.buffers[chart]
            self.curves[chart].setData(buffer.x, buffer.y)
            self.on_data(chart, float(buffer.x[-1]))
        self.dirty.clear()
        self.on_refresh(time.perf_counter() - started)
