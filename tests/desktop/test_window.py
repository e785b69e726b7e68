"""The dashboard window against a real ticker_server, on Qt's event loop through qasync."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QSettings, Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from ticker_desktop.app import make_window
from ticker_desktop.client import (
    ConnectionState,
    StateChanged,
    SubscriptionChanged,
    TicksReceived,
)
from ticker_desktop.main_window import MainWindow
from ticker_server.app import ServerConfig, TickerServer

from .conftest import FAST, EventLog, until

pytestmark = pytest.mark.qt_loop


class Desk:
    """Real servers and started windows for one test, all stopped when the block exits.

    Window tests own everything inside the test coroutine: pytest-qt processes
    Qt events between the test and fixture teardown, when qasync's loop is not
    running, so no task may still be alive then.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.servers: list[TickerServer] = []
        self.windows: list[MainWindow] = []
        self.logs: dict[MainWindow, EventLog] = {}
        """Each window's client events from its start, to await instead of polling."""
        self.exited = True

    async def server(self, **overrides: Any) -> TickerServer:
        settings: dict[str, Any] = {"port": 0, "tick_rate": 20.0, "seed": 11, "heartbeat": 1.0}
        settings.update(overrides)
        server = TickerServer(ServerConfig(**settings))
        await server.start()
        self.servers.append(server)
        return server

    def window(self, url: str, symbols: list[str], settings: QSettings | None = None) -> MainWindow:
        settings = settings or QSettings(
            str(self.tmp_path / "settings.ini"), QSettings.Format.IniFormat
        )
        if not settings.contains("chart/mode"):
            # These tests were written on the line chart; a first run opens on candles.
            settings.setValue("chart/mode", "line")
        window = make_window(url, symbols, settings, FAST)
        self.logs[window] = EventLog(window.client)
        window.resize(1200, 760)
        window.show()
        window.start()
        self.windows.append(window)
        return window

    async def live_window(
        self, symbols: list[str], **overrides: Any
    ) -> tuple[MainWindow, TickerServer]:
        """A server and a window connected to it, once live."""
        server = await self.server(**overrides)
        window = self.window(server.url, symbols)
        await self.logs[window].wait_for(StateChanged, lambda e: e.state is ConnectionState.LIVE)
        return window, server

    async def __aenter__(self) -> Desk:
        self.exited = False
        return self

    async def __aexit__(self, *exc: object) -> None:
        for window in self.windows:
            window.close()
            await window.shutdown()
            window.deleteLater()
        for server in self.servers:
            await server.stop()
        self.exited = True


@pytest.fixture
def desk(qapp: QApplication, tmp_path: Path) -> Iterator[Desk]:
    desk = Desk(tmp_path)
    yield desk
    assert desk.exited, "use the desk as 'async with desk:' inside the test"


def row_text(window: MainWindow, symbol: str, column: int) -> str:
    model = window.model
    row = model.symbols.index(symbol)
    return str(model.data(model.index(row, column)))


async def test_connects_and_offers_hello_symbols_in_completer(desk: Desk) -> None:
    """Once live the status says so and the completer offers every symbol of the hello."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        hello = window.client.hello
        assert hello is not None
        await until(
            lambda: set(hello.symbols) <= set(window.completer_symbols()), "completer symbols"
        )
        await until(lambda: "MSFT" in window.model.names, "names from list_symbols")
        assert "live" in window.status.state_text
        assert window.client.url in window.status.url_label.text()
        window.completer.setCompletionPrefix("ms")
        assert window.completer.currentCompletion() == "MSFT"
        shown = window.completer.completionModel().index(0, 0).data()
        assert shown.startswith("MSFT") and len(shown) > len("MSFT"), "the popup shows the name"


async def test_adding_a_symbol_fills_table_and_chart(desk: Desk) -> None:
    """Typing a symbol and Enter subscribes: a snapshot fills the row and the chart at once."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        aapl = window.store.get("AAPL")
        await until(
            lambda: aapl is not None and len(aapl.ticks) > 20, "the server to build history"
        )
        log = EventLog(window.client)
        QTest.keyClicks(window.symbol_box, "msft")
        QTest.keyClick(window.symbol_box, Qt.Key.Key_Return)
        assert window.current == "MSFT"
        snapshot = await log.wait_for(TicksReceived, lambda e: e.snapshot == "MSFT")
        # The server's whole MSFT history so far (arrivals are bursty, so not a fixed count).
        seqs = [tick.seq for tick in snapshot.ticks]
        assert len(seqs) >= 2 and seqs == list(range(1, len(seqs) + 1))
        series = window.store.get("MSFT")
        assert series is not None
        await until(lambda: row_text(window, "MSFT", 1) != "—", "a last price for MSFT")
        curve = window.chart.pane.curve
        await until(lambda: curve.getData()[0] is not None, "chart data")
        await until(lambda: len(curve.getData()[0]) == len(series.ticks), "chart caught up")
        assert np.array_equal(curve.getData()[1], series.ticks.price)


async def test_removing_a_symbol_unsubscribes(desk: Desk) -> None:
    """Delete on a selected row removes it from the table and unsubscribes on the server."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        log = EventLog(window.client)
        window.add_symbols("MSFT")
        await log.wait_for(SubscriptionChanged, lambda e: "MSFT" in e.symbols)
        window.watchlist.select_symbol("MSFT")
        after = len(log.events)  # the startup subscribe's own ["AAPL"] reply may come late
        QTest.keyClick(window.watchlist, Qt.Key.Key_Delete)
        assert window.model.symbols == ["AAPL"]
        await log.wait_for(SubscriptionChanged, lambda e: e.symbols == ["AAPL"], start=after)
        assert window.client.symbols == ["AAPL"]
        assert window.current == "AAPL"
        assert list(window.grid.panes) == ["AAPL"]


async def test_unknown_symbol_shows_the_server_error(desk: Desk) -> None:
    """An unknown symbol shows the server's error above the charts and leaves no row."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        window.add_symbols("NOPE")
        await until(lambda: window.error_banner.isVisible(), "the error banner")
        text = window.error_banner.text()
        assert "unknown_symbol" in text and "NOPE" in text
        await until(lambda: "NOPE" not in window.model.symbols, "the row to go")
        assert window.client.state is ConnectionState.LIVE
        assert window.current == "AAPL", "the chart goes back to what it showed"


async def test_server_restart_reconnects_and_resumes_without_duplicates(desk: Desk) -> None:
    """Server stopped: reconnecting and greyed; restarted: live again, data resumes in order."""
    async with desk:
        window, server = await desk.live_window(["AAPL", "MSFT"])
        series = window.store.get("AAPL")
        assert series is not None
        await until(lambda: len(series.ticks) > 20, "AAPL ticks")
        await server.stop()
        await until(lambda: window.status.state is ConnectionState.RECONNECTING, "reconnecting")
        assert "reconnecting in" in window.status.state_text
        assert not window.model.connected and not window.chart.pane.connected
        held = len(series.ticks)
        await desk.server(port=server.port)
        await until(lambda: window.status.state is ConnectionState.LIVE, "live again")
        await until(lambda: len(series.ticks) > held + 10, "ticks after the restart")
        assert window.model.connected
        ts, seq = series.ticks.ts, series.ticks.column("seq")
        assert np.all(np.diff(ts) >= 0), "no out-of-order points"
        restarts = np.flatnonzero(np.diff(seq) <= 0)
        assert list(restarts) == [held - 1], "no repeats: seqs restart once, at the new epoch"
        assert len(series.gaps) == 1
        await until(lambda: len(window.chart.pane.gap_items) == 2, "the gap marked on the chart")


async def test_closing_during_reconnect_leaves_no_pending_tasks(desk: Desk) -> None:
    """Closing the window while it waits to reconnect stops every task it started."""
    async with desk:
        window, server = await desk.live_window(["AAPL"])
        await server.stop()
        await until(lambda: window.status.state is ConnectionState.RECONNECTING, "reconnecting")
        window.close()
        await window.shutdown()
        assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_live_charts_paint_for_seconds(desk: Desk) -> None:
    """Line, candle and grid charts paint live for seconds (the PySide6 6.12 none_dealloc trap)."""
    async with desk:
        window, _ = await desk.live_window(["AAPL", "MSFT", "NVDA", "TSLA"], tick_rate=40.0)
        stats = window.stats
        for mode, grid in (("line", False), ("candles", False), ("candles", True), ("line", True)):
            window.mode_box.setCurrentIndex(window.mode_box.findData(mode))
            window.grid_action.setChecked(grid)
            target = stats.paints + 60
            await until(lambda: stats.paints >= target, f"{mode} paints, grid={grid}")  # noqa: B023
        assert stats.refreshes > 40
        latency = stats.summary()["latency_p50_ms"]
        assert latency is not None and latency < 2000
        candles = window.chart.pane.candles.series
        assert candles is not None and len(candles) > 0


async def test_screenshot_of_the_window_is_not_blank(desk: Desk, tmp_path: Path) -> None:
    """A grab of the main window shows dark-themed content and saves as a PNG."""
    async with desk:
        window, _ = await desk.live_window(["AAPL", "MSFT"])
        series = window.store.get("MSFT")
        assert series is not None
        await until(lambda: len(series.ticks) > 5 and window.stats.paints > 5, "a painted chart")
        path = tmp_path / "window.png"
        assert window.grab().save(str(path))
    image = QImage(str(path))
    assert image.width() >= 1000 and image.height() >= 600
    small = image.scaled(160, 100)
    colors = {small.pixel(x, y) for x in range(small.width()) for y in range(small.height())}
    assert len(colors) > 50, "a blank window has a handful of colours"
    assert image.pixelColor(image.width() * 3 // 4, image.height() // 2).lightness() < 100


async def test_file_menu_saves_png_and_exports_csv(desk: Desk, tmp_path: Path) -> None:
    """Save chart writes a PNG; export writes every held tick of the symbol as CSV."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        series = window.store.get("AAPL")
        assert series is not None
        await until(lambda: len(series.ticks) > 5, "AAPL ticks")
        png = tmp_path / "chart.png"
        assert window.save_chart_png(png)
        out = tmp_path / "aapl.csv"
        rows = window.export_csv("AAPL", out)
        seqs = list(series.ticks.column("seq")[:rows])
    assert QImage(str(png)).width() > 100
    with out.open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == rows >= 5
    assert [int(r["seq"]) for r in table] == seqs
    assert set(table[0]) >= {"symbol", "time", "seq", "ts", "price", "bid", "ask", "merged"}


async def test_panning_leaves_live_and_end_returns(desk: Desk) -> None:
    """A manual pan stops following the live edge; the End key follows it again."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        pane = window.chart.pane
        await until(lambda: pane.refreshes > 2, "a few refreshes")
        vb = pane.plot.vb
        (x0, x1), _ = vb.viewRange()
        vb.translateBy(x=-(x1 - x0) / 2)
        vb.sigRangeChangedManually.emit(vb.state["mouseEnabled"])
        assert not pane.following
        await until(lambda: window.live_button.isEnabled(), "the live button")
        QTest.keyClick(window, Qt.Key.Key_End)
        assert pane.following
        series = window.store.get("AAPL")
        assert series is not None
        await until(lambda: vb.viewRange()[0][1] >= series.ticks.last_ts, "the live edge")


async def test_crosshair_reads_out_time_and_price(desk: Desk) -> None:
    """Moving the mouse over the chart shows the crosshair and a price and time readout."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        pane = window.chart.pane
        await until(lambda: pane.refreshes > 2, "a few refreshes")
        crosshair = pane.crosshair
        assert crosshair is not None
        center = pane.plot.vb.sceneBoundingRect().center()
        pane.plot.scene().sigMouseMoved.emit(QPointF(center))
        await until(lambda: crosshair.readout.isVisible(), "the readout")
        text = crosshair.readout.textItem.toPlainText()
        assert ":" in text and "last" in text


async def test_settings_remember_symbols_mode_and_view(desk: Desk, tmp_path: Path) -> None:
    """Closing saves URL, symbols, chart mode, interval and view; a new window restores them."""
    settings = QSettings(str(tmp_path / "remember.ini"), QSettings.Format.IniFormat)
    async with desk:
        server = await desk.server()
        first = desk.window(server.url, ["AAPL", "MSFT"], settings)
        first.mode_box.setCurrentIndex(first.mode_box.findData("candles"))
        first.interval_box.setCurrentIndex(first.interval_box.findData(5.0))
        first.grid_action.setChecked(True)
        first.close()
        await first.shutdown()
        assert settings.value("connection/url") == server.url
        assert settings.value("watchlist/symbols") == "AAPL,MSFT"
        second = desk.window(server.url, ["AAPL"], settings)
        assert second.chart_mode() == ("candles", 5.0)
        assert second.grid_action.isChecked()
        assert second.charts.currentWidget() is second.grid


def offered(window: MainWindow) -> list[float]:
    box = window.interval_box
    return [box.itemData(i) for i in range(box.count())]


async def test_candle_widths_offered_are_exact_at_the_granted_rate(desk: Desk) -> None:
    """Capped at 1/2 per second, the window asks for 1/5 and offers only the widths from 5 s up."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"], max_rate=0.5)
        window.mode_box.setCurrentIndex(window.mode_box.findData("candles"))
        window.interval_box.setCurrentIndex(window.interval_box.findData(1.0))
        # 2 s windows would leave only 1 min exact; 5 s windows keep 5 s candles too.
        await until(
            lambda: offered(window) == [5.0, 15.0, 60.0, 300.0, 900.0, 3600.0], "exact widths"
        )
        assert window.client.granted_rate == 0.2
        assert window.chart_mode() == ("candles", 5.0)
        assert window.chart.pane.interval == 5.0


async def test_every_width_is_offered_at_the_default_rate(desk: Desk) -> None:
    """At the dashboard's default the server grants 50/s, whose 20 ms windows divide every width."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"], max_rate=50.0)
        await until(lambda: window.client.granted_rate is not None, "the granted rate")
        assert window.client.granted_rate == 50.0
        assert offered(window) == [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0]


async def test_grid_shows_every_symbol_and_double_click_opens_one(desk: Desk) -> None:
    """The grid has a live small chart per watched symbol; a double click opens it large."""
    async with desk:
        window, _ = await desk.live_window(["AAPL", "MSFT", "NVDA"])
        window.grid_action.setChecked(True)
        grid = window.grid
        assert list(grid.panes) == ["AAPL", "MSFT", "NVDA"]
        await until(lambda: all(p.refreshes > 2 for p in grid.panes.values()), "small charts")
        target = grid.panes["MSFT"].plot.sceneBoundingRect().center()
        point = grid.mapFromScene(target)
        QTest.mouseDClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=point)
        await until(lambda: window.charts.currentWidget() is window.chart, "the large chart")
        assert window.current == "MSFT"


async def test_a_first_run_opens_on_one_minute_candles(qapp: QApplication, tmp_path: Path) -> None:
    """With no settings yet, the chart opens on 1-minute candles, where the session's bars show at once."""
    settings = QSettings(str(tmp_path / "fresh.ini"), QSettings.Format.IniFormat)
    window = make_window("ws://127.0.0.1:9", ["AAPL"], settings, FAST, remember_url=False)
    try:
        assert window.chart_mode() == ("candles", 60.0)
    finally:
        window.deleteLater()
