"""The indicator lines' path cache draws what a path built afresh draws, through live updates,
rewritten rows, eviction, zoom and pan (real pyqtgraph plots, Qt offscreen)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from ticker_desktop.buffers import CandleSeries, TickBuffer
from ticker_desktop.curves import LinesItem
from ticker_desktop.indicators import IndicatorSpec
from ticker_desktop.overlays import IndicatorOverlay
from ticker_desktop.store import SymbolSeries

DESK = [IndicatorSpec("sma", 20), IndicatorSpec("ema", 50), IndicatorSpec("vwap")]
DESK.append(IndicatorSpec("bollinger"))
RATE = 10.0
"""Ticks a second: a 120 s view then holds more rows than pixels, so lines are thinned."""


class Chart:
    """One plot with an indicator overlay over a real tick buffer and candles."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.widget = pg.PlotWidget()
        self.widget.resize(320, 200)
        self.widget.show()
        self.plot = self.widget.getPlotItem()
        self.overlay = IndicatorOverlay(self.plot)
        self.overlay.set_specs(DESK)
        # A dash pattern starts where its path starts, and a cached path starts a little earlier
        # than one built for this frame (off-screen): the comparison needs solid pens.
        self.overlay.pens[DESK[3]][0] = pg.mkPen("#7986cb", width=1.2)
        self.series = SymbolSeries(
            symbol="T",
            ticks=TickBuffer(capacity),
            candles={1.0: CandleSeries(1.0, capacity)},
            added_at=0.0,
        )
        self.rng = np.random.default_rng(5)
        self.seq, self.ts, self.price = 0, 1.7e9, 100.0
        self.mode = "line"

    def feed(self, n: int) -> None:
        """Append ``n`` ticks (a random walk) and bring the overlay up to date."""
        ts = self.ts + np.arange(1, n + 1) / RATE
        price = self.price + np.cumsum(self.rng.normal(0, 0.05, n))
        size = self.rng.integers(1, 500, n)
        ones = np.ones(n, dtype=np.int64)
        seq = np.arange(self.seq + 1, self.seq + n + 1)
        rows = {"seq": seq, "ts": ts, "price": price, "bid": price, "ask": price, "size": size}
        rows |= {"volume": np.cumsum(size), "merged": ones, "high": price, "low": price}
        self.series.ticks.extend(rows)
        self.series.candles[1.0].extend(ts, price, size, price, price, ones, price)
        self.seq, self.ts, self.price = self.seq + n, float(ts[-1]), float(price[-1])
        self.overlay.refresh(self.series, self.mode, 1.0)

    def view(self, x0: float, x1: float) -> None:
        self.plot.vb.setXRange(x0, x1, padding=0.0)
        ts, price = self.series.ticks.ts, self.series.ticks.price
        shown = price[np.searchsorted(ts, x0) : np.searchsorted(ts, x1)]
        lo, hi = float(shown.min()) - 0.5, float(shown.max()) + 0.5
        if self.overlay.upper_lines.log:
            lo, hi = np.log10(lo), np.log10(hi)
        self.plot.vb.setYRange(lo, hi, padding=0.0)

    def follow(self, span: float = 120.0) -> None:
        self.view(self.ts - span, self.ts + span * 0.04)

    def image(self, item: LinesItem) -> np.ndarray:
        self.overlay.upper_lines.setVisible(item is self.overlay.upper_lines)
        item.setVisible(True)
        image = self.widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
        bits = np.frombuffer(image.constBits(), dtype=np.uint32)
        return bits.reshape(image.height(), -1).copy()

    def assert_as_fresh(self) -> None:
        """The overlay's lines look exactly as those of an item that never drew before."""
        cached = self.overlay.upper_lines
        fresh = LinesItem()
        self.plot.addItem(fresh, ignoreBounds=True)
        fresh.log = cached.log
        fresh.set_lines(cached.lines, cached.rows)
        fresh.setVisible(False)
        drawn = self.image(cached)
        fresh_drawn = self.image(fresh)
        self.plot.removeItem(fresh)
        cached.setVisible(True)
        blank = self.image(LinesItem())
        assert (drawn != blank).sum() > 200, "the lines are in view"
        # Where the lines enter the view, a cached path that starts a sample earlier has a
        # join instead of a cap, a pixel or two wide: compare from there on.
        left = int(self.plot.vb.sceneBoundingRect().left()) + 3
        assert np.array_equal(drawn[:, left:], fresh_drawn[:, left:])


@pytest.fixture
def chart(qapp: QApplication) -> Iterator[Chart]:
    chart = Chart()
    yield chart
    chart.widget.close()


@pytest.mark.parametrize("mode", ["line", "candles"])
def test_live_frames_extend_the_cache_and_draw_as_a_fresh_path(chart: Chart, mode: str) -> None:
    """Scrolling with live ticks (an open candle changing in place) reuses the cached paths,
    and every frame draws what a path built afresh draws."""
    chart.mode = mode
    chart.feed(3000)
    chart.follow()
    chart.assert_as_fresh()
    built = chart.overlay.upper_lines.rebuilds
    for _ in range(12):
        chart.feed(3)
        chart.follow()
        chart.assert_as_fresh()
    assert chart.overlay.upper_lines.rebuilds == built, "live frames only extend the paths"


def test_rows_rewritten_by_a_full_pass_are_redrawn(chart: Chart) -> None:
    """History that changes finished rows (overlay.reset, then a full pass) is not drawn stale."""
    chart.feed(3000)
    chart.follow()
    chart.assert_as_fresh()
    price = chart.series.ticks.column("price")
    price[:-1] += np.linspace(0.0, 2.0, len(price) - 1)  # every finished row moves
    chart.overlay.reset()
    chart.overlay.refresh(chart.series, "line", 1.0)
    chart.assert_as_fresh()


def test_eviction_drops_the_rows_it_evicted(qapp: QApplication) -> None:
    """With the oldest rows in view, rows the buffer evicts vanish from the cached lines too."""
    chart = Chart(capacity=1000)
    chart.feed(900)
    chart.view(chart.ts - 120.0, chart.ts + 5.0)
    chart.assert_as_fresh()
    for _ in range(6):
        chart.feed(40)
        chart.view(chart.ts - 120.0, chart.ts + 5.0)
        chart.assert_as_fresh()
    assert chart.series.ticks.evicted > 0
    chart.widget.close()


def test_zoom_and_pan_redraw_at_the_new_density_and_place(chart: Chart) -> None:
    """Zooming in and out changes the thinning, panning into history moves what is cached."""
    chart.feed(6000)
    for x0, x1 in [(-120, 5), (-30, 1), (-400, 5), (-500, -380), (-220, -95), (-120, 5)]:
        chart.view(chart.ts + x0, chart.ts + x1)
        chart.assert_as_fresh()


def test_the_log_scale_redraws_the_cached_lines_in_log_units(chart: Chart) -> None:
    """Switching the price scale to log and back never draws a path cached in the other units."""
    chart.feed(3000)
    for log in (False, True, False):
        chart.overlay.upper_lines.log = log
        chart.follow()
        chart.assert_as_fresh()
        chart.feed(3)
        chart.follow()
        chart.assert_as_fresh()


def test_band_range_spans_the_bands_in_view_past_their_undefined_rows(chart: Chart) -> None:
    """The price axis fits the Bollinger bands in view, whether or not the view starts in
    the rows before the bands are defined, and there is nothing to fit before that."""
    chart.feed(300)
    ts = chart.series.ticks.ts
    upper, lower = (chart.overlay.indicators[DESK[3]].column(c) for c in ("upper", "lower"))
    for i0, i1 in [(0, 300), (5, 120), (19, 200), (150, 300)]:
        x0, x1 = float(ts[i0]), float(ts[i1 - 1]) + 1e-6
        expected = (float(np.nanmin(lower[i0:i1])), float(np.nanmax(upper[i0:i1])))
        assert chart.overlay.band_range(x0, x1) == expected
    assert chart.overlay.band_range(float(ts[0]), float(ts[10])) is None
