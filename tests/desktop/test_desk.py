"""The desk features in the real window against a real server: indicators, alerts, tape,
comparison, workspaces and the symbol search (Qt offscreen, qasync loop)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from ticker_desktop.alerts import Alert
from ticker_desktop.client import ConnectionState
from ticker_desktop.main_window import MainWindow

from .conftest import TIMEOUT, until
from .test_window import Desk

pytestmark = pytest.mark.qt_loop

LOAD = TIMEOUT / 10
"""Timing bounds scale with TICKER_TEST_TIMEOUT, as every wait does."""


@pytest.fixture
def desk(qapp: QApplication, tmp_path: Path) -> Iterator[Desk]:
    desk = Desk(tmp_path)
    yield desk
    assert desk.exited, "use the desk as 'async with desk:' inside the test"


async def ticks_of(window: MainWindow, symbol: str, count: int) -> None:
    series = window.store.get(symbol)
    await until(
        lambda: series is not None and len(series.ticks) >= count, f"{count} {symbol} ticks"
    )


async def test_toggling_indicators_draws_them_and_updates_incrementally(desk: Desk) -> None:
    """SMA/EMA are on by default; RSI opens the lower pane; live ticks then cost no full pass."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        await ticks_of(window, "AAPL", 40)
        pane = window.chart.pane
        overlay = pane.overlay
        assert [s.key for s in overlay.specs] == ["sma:20", "ema:50"]
        window.desk.indicator_actions["rsi"].trigger()
        window.desk.indicator_actions["bollinger"].trigger()
        assert pane.lower_plot is not None and pane.lower_plot.isVisible()
        assert window.desk.indicator_keys["chart"] == ["sma:20", "ema:50", "bollinger", "rsi"]
        series = window.store.get("AAPL")
        assert series is not None
        held = len(series.ticks)
        await until(lambda: len(series.ticks) > held + 20, "more live ticks")
        rsi = next(i for s, i in overlay.indicators.items() if s.kind == "rsi")
        await until(lambda: len(rsi) == len(series.ticks), "RSI caught up")
        assert rsi.full_passes == 1, "live ticks update the newest rows only"
        [(_, xs, ys)] = overlay.lower_lines.lines
        assert len(xs) == len(ys) == len(series.ticks) - 14, "drawn from its first defined row"
        assert np.all((ys >= 0) & (ys <= 100))
        sma = next(i for s, i in overlay.indicators.items() if s.kind == "sma")
        n = len(sma)
        expected = series.ticks.price[n - 20 : n].mean()
        assert sma.column("sma")[-1] == pytest.approx(expected)
        window.desk.indicator_actions["rsi"].trigger()
        assert not pane.lower_plot.isVisible()
        assert all(s.kind != "rsi" for s in overlay.specs)
        # Candles: the indicators follow the interval, one full pass over the candles.
        window.mode_box.setCurrentIndex(window.mode_box.findData("candles"))
        await until(
            lambda: any(len(i) and i.spec.kind == "sma" for i in overlay.indicators.values()),
            "SMA on candles",
        )
        sma = next(i for s, i in overlay.indicators.items() if s.kind == "sma")
        assert len(sma) == len(series.candles[pane.interval])


async def test_an_alert_fires_once_shows_everywhere_and_survives_a_restart(desk: Desk) -> None:
    """Alerts a cent either side of the price: one fires within 3 frames of its update's arrival,
    once; both are drawn, listed and saved, and a new window on the same settings has them."""
    async with desk:
        server = await desk.server(tick_rate=40.0)
        window = desk.window(server.url, ["AAPL"])
        await ticks_of(window, "AAPL", 5)
        series = window.store.get("AAPL")
        assert series is not None and series.last is not None
        fired: list[Alert] = []
        window.desk.alerts.alert_fired.connect(fired.append)
        price = series.last.price
        up = window.desk.alerts.add("AAPL", round(price + 0.01, 2))
        down = window.desk.alerts.add("AAPL", round(price - 0.01, 2))
        assert (up.condition, down.condition) == ("above", "below")
        assert set(window.chart.pane.alert_lines.levels) == {up.id, down.id}
        assert window.desk.alerts.model.rowCount() == 2
        await until(lambda: fired, "an alert to fire")
        alert = fired[0]
        assert alert.triggered is not None and alert.price is not None
        # The desk's share of the tick-to-alert delay: at most a few 16 ms frames. (The whole
        # delay from the tick's ts adds the server's window and the network: see the README.)
        lag = window.desk.alerts.fire_lag[alert.id]
        assert 0 <= lag < 0.05 * LOAD, f"fired {lag * 1000:.0f} ms after the update arrived"
        assert window.desk.alerts.fired_at[alert.id] > alert.triggered
        assert "Alert:" in window.statusBar().currentMessage()
        assert alert.symbol in window.desk.alerts.alerted
        assert alert.id not in window.chart.pane.alert_lines.levels, "a fired alert's line goes"
        held = len(series.ticks)
        await until(lambda: len(series.ticks) > held + 40, "more ticks after the alert")
        assert [a.id for a in fired].count(alert.id) == 1, "fires exactly once"
        expected = {a.id: a.triggered for a in window.desk.alerts.book}
        window.close()
        await window.shutdown()
        again = desk.window(server.url, ["AAPL"])
        book = {a.id: a.triggered for a in again.desk.alerts.book}
        assert book == expected
        assert again.desk.alerts.model.rowCount() == 2
        waiting = [a.id for a in again.desk.alerts.book if a.triggered is None]
        await ticks_of(again, "AAPL", 1)
        await until(lambda: set(again.chart.pane.alert_lines.levels) == set(waiting), "lines back")


async def test_right_click_menu_sets_an_alert_at_the_clicked_price(desk: Desk) -> None:
    """The chart menu's first entry makes an alert at that price, drawn as a dashed line."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        await ticks_of(window, "AAPL", 5)
        menu = window.desk.alerts.chart_menu("AAPL", 123.45)
        assert menu.actions()[0].text() == "Alert AAPL at 123.45"
        menu.actions()[0].trigger()
        [alert] = list(window.desk.alerts.book)
        assert (alert.symbol, alert.level) == ("AAPL", 123.45)
        assert window.chart.pane.alert_lines.levels == {alert.id: (123.45, alert.condition)}
        rows = window.watchlist.context_menu(["AAPL"]).actions()
        assert rows[-1].text() == "Alert on AAPL…"


async def test_the_tape_fills_newest_first_and_marks_merged_updates(desk: Desk) -> None:
    """At 50 ticks/s throttled to 5 updates/s, the tape lists every update newest first and
    marks the merged ones with their trade count."""
    async with desk:
        server = await desk.server(tick_rate=50.0, max_rate=5.0)
        window = desk.window(server.url, ["AAPL"])
        await ticks_of(window, "AAPL", 1)
        series = window.store.get("AAPL")
        assert series is not None
        model = window.desk.tape_model
        rows = model.tape.rows
        await until(lambda: any(r.merged > 1 for r in rows), "a merged update on the tape")
        # The tape is the store's rows it has seen, newest first, none skipped or repeated.
        ticks = series.ticks
        unseen = ticks.added - model._seen
        held = ticks.ts[: len(ticks) - unseen][::-1][: len(rows)]
        assert [r.ts for r in rows] == held.tolist()
        assert model.rowCount() == len(rows) >= 10
        merged = [i for i, r in enumerate(rows) if r.merged > 1]
        text = model.data(model.index(merged[0], 3))
        assert text == f"×{rows[merged[0]].merged}"  # noqa: RUF001


async def test_a_workspace_saves_and_restores_and_the_last_opens_on_start(desk: Desk) -> None:
    """Saving a workspace then changing the layout: loading it restores view, mode, indicators
    and comparison; a new window on the same settings opens in it."""
    async with desk:
        window, server = await desk.live_window(["AAPL", "MSFT"])
        await ticks_of(window, "MSFT", 2)
        window.show_symbol("AAPL")
        window.mode_box.setCurrentIndex(window.mode_box.findData("candles"))
        window.desk.set_indicators("chart", ["vwap", "macd"])
        window.desk.set_compare(["MSFT"])
        window.grid_action.setChecked(True)
        window.desk.set_indicators("grid", ["bollinger"])
        window.desk.save_workspace("Morning")
        window.single_action.setChecked(True)
        window.mode_box.setCurrentIndex(window.mode_box.findData("line"))
        window.desk.set_indicators("chart", [])
        window.desk.set_compare([])
        window.show_symbol("MSFT")
        assert window.desk.load_workspace("Morning")
        assert window.grid_action.isChecked()
        assert window.chart_mode()[0] == "candles"
        assert window.desk.indicator_keys == {"chart": ["vwap", "macd"], "grid": ["bollinger"]}
        assert [s.key for s in window.chart.pane.overlay.specs] == ["vwap", "macd"]
        assert window.current == "AAPL"
        assert list(window.chart.pane.comparison.curves) == ["MSFT"]
        assert window.desk.indicator_actions["bollinger"].isChecked(), "menu shows the grid's set"
        window.close()
        await window.shutdown()
        again = desk.window(server.url, ["AAPL", "MSFT"])
        assert again.desk.workspaces.names() == ["Morning"]
        assert again.grid_action.isChecked()
        assert again.desk.indicator_keys == {"chart": ["vwap", "macd"], "grid": ["bollinger"]}


async def test_ctrl_k_opens_any_symbol_from_anywhere(desk: Desk) -> None:
    """Ctrl+K, a few letters and Enter: the symbol is watched and its chart shown."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        await until(lambda: "MSFT" in window.completer_symbols(), "the symbol list")
        window.grid_action.setChecked(True)
        QTest.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
        search = window.desk.search
        assert search.isVisible()
        QTest.keyClicks(search.box, "msf")
        assert search.matches()[0].startswith("MSFT")
        QTest.keyClick(search.box, Qt.Key.Key_Return)
        assert window.current == "MSFT"
        assert window.single_action.isChecked()
        await ticks_of(window, "MSFT", 1)


async def test_grid_charts_have_a_price_axis_and_last_price_tag(desk: Desk) -> None:
    """Each small chart shows a compact price axis and its last price at the right edge."""
    async with desk:
        window, _ = await desk.live_window(["AAPL", "MSFT", "NVDA", "TSLA"])
        window.grid_action.setChecked(True)
        for symbol in ("AAPL", "TSLA"):
            await ticks_of(window, symbol, 3)
        pane = window.grid.panes["TSLA"]
        await until(
            lambda: pane.last_price.label is not None and pane.last_price.label.isVisible(), "a tag"
        )
        assert pane.plot.getAxis("right").isVisible()
        series = window.store.get("TSLA")
        assert series is not None and series.last is not None
        await until(
            lambda: pane.last_price._text == f"{window.store.get('TSLA').last.price:,.2f}",
            "tag = last",
        )


async def test_log_scale_puts_the_price_axis_in_log_units_labelled_as_prices(desk: Desk) -> None:
    """With the log scale on, the view's y range is log10 of the prices in view, the axis still
    reads prices, candles draw in log units, and it survives a workspace round trip."""
    async with desk:
        window, _ = await desk.live_window(["AAPL"])
        await ticks_of(window, "AAPL", 30)
        pane = window.chart.pane
        window.desk.set_log(True)
        series = window.store.get("AAPL")
        assert series is not None and series.last is not None
        _, (y0, y1) = pane.plot.vb.viewRange()
        assert y0 < np.log10(series.last.price) < y1 < 4, "log units, not dollars"
        axis = pane.plot.getAxis("right")
        assert axis.tickStrings([np.log10(123.45)], 1.0, 0.01) == ["123.45"]
        window.mode_box.setCurrentIndex(window.mode_box.findData("candles"))
        assert pane.candles.log
        window.desk.save_workspace("Log")
        window.desk.set_log(False)
        _, (y0, y1) = pane.plot.vb.viewRange()
        assert y0 < series.last.price < y1
        window.desk.load_workspace("Log")
        assert pane.log and window.desk.log_action.isChecked()
        window.desk.set_compare(["AAPL"])  # itself: no comparison, scale untouched
        assert pane.log


async def test_an_alert_set_while_disconnected_fires_after_the_reconnect(desk: Desk) -> None:
    """An alert made while the server is down waits, then fires on the restarted feed's updates."""
    async with desk:
        window, server = await desk.live_window(["AAPL"])
        await ticks_of(window, "AAPL", 5)
        await server.stop()
        await until(lambda: window.status.state is ConnectionState.RECONNECTING, "reconnecting")
        series = window.store.get("AAPL")
        assert series is not None and series.last is not None
        price = series.last.price
        up = window.desk.alerts.add("AAPL", round(price + 0.01, 2))
        down = window.desk.alerts.add("AAPL", round(price - 0.01, 2))
        held = len(series.ticks)
        await desk.server(port=server.port)
        await until(lambda: window.status.state is ConnectionState.LIVE, "live again")
        book = window.desk.alerts.book
        await until(lambda: any((book.get(a.id) or a).triggered for a in (up, down)), "a fire")
        fired = next(a for a in book if a.triggered is not None)
        assert fired.triggered is not None and fired.triggered >= float(series.ticks.ts[held])
