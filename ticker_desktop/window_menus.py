"""The dashboard window's menus, toolbar, file exports and settings (from :mod:`.main_window`).

Each function takes the window; the actions it makes are attributes declared on it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSignalBlocker, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QFileDialog, QToolBar

from .export import export_bars_csv, export_ticks_csv
from .theme import UP

if TYPE_CHECKING:
    from .main_window import MainWindow

__all__ = [
    "INTERVAL_NAMES",
    "ask_export_bars",
    "ask_export_csv",
    "ask_save_png",
    "build_menus",
    "export_bars_csv_of",
    "export_csv",
    "offer_intervals",
    "restore_settings",
    "save_chart_png",
    "save_settings",
]


INTERVAL_NAMES = {
    1.0: "1 s",
    5.0: "5 s",
    15.0: "15 s",
    60.0: "1 min",
    300.0: "5 min",
    900.0: "15 min",
    3600.0: "1 h",
}


def build_menus(window: MainWindow) -> None:
    file_menu = window.menuBar().addMenu("&File")
    window.save_png_action = file_menu.addAction(
        "Save chart as &PNG…", lambda: ask_save_png(window)
    )
    window.save_png_action.setShortcut(QKeySequence.StandardKey.Save)
    window.export_action = file_menu.addAction(
        "&Export ticks as CSV…", lambda: ask_export_csv(window)
    )
    window.export_action.setShortcut(QKeySequence("Ctrl+E"))
    window.export_bars_action = file_menu.addAction(
        "Export &bars as CSV…", lambda: ask_export_bars(window)
    )
    window.export_bars_action.setShortcut(QKeySequence("Ctrl+Shift+E"))
    file_menu.addSeparator()
    quit_action = file_menu.addAction("&Quit", window.close)
    quit_action.setShortcut(QKeySequence.StandardKey.Quit)

    view = window.menuBar().addMenu("&View")
    group = QActionGroup(window)
    window.single_action = QAction("&Selected symbol", window, checkable=True, checked=True)
    window.grid_action = QAction("&Grid of all symbols", window, checkable=True)
    window.grid_action.setShortcut(QKeySequence("Ctrl+G"))
    for action in (window.single_action, window.grid_action):
        group.addAction(action)
        view.addAction(action)
        action.toggled.connect(window._view_toggled)
    view.addSeparator()
    window.live_action = view.addAction("Return to &live", window.go_live)
    window.live_action.setShortcuts([QKeySequence(Qt.Key.Key_End), QKeySequence("Ctrl+L")])
    window.reconnect_action = view.addAction("&Reconnect now", window.bridge.reconnect)
    window.reconnect_action.setShortcut(QKeySequence("Ctrl+R"))

    bar = QToolBar("Main")
    bar.setMovable(False)
    bar.setObjectName("main_toolbar")
    window.addToolBar(bar)
    bar.addWidget(window.symbol_box)
    bar.addAction("Add", window._add_from_box)
    bar.addSeparator()
    bar.addAction(window.single_action)
    bar.addAction(window.grid_action)
    bar.addSeparator()
    bar.addWidget(window.mode_box)
    bar.addWidget(window.interval_box)
    bar.addSeparator()
    window.live_button = bar.addAction("● Live", window.go_live)
    window.live_button.setToolTip("Follow the live edge again (End)")
    button = bar.widgetForAction(window.live_button)
    if button is not None:
        # Disabled means "already following": show it green rather than greyed out.
        button.setStyleSheet(f"QToolButton:disabled {{ color: {UP.name()}; }}")
    window.single_action.setText("Chart")
    window.grid_action.setText("Grid")


# -- files ---------------------------------------------------------------------------


def save_chart_png(window: MainWindow, path: str | Path) -> bool:
    """Save what the chart area shows as a PNG."""
    return bool(window.current_chart().grab().save(str(path), "PNG"))


def export_csv(window: MainWindow, symbol: str, path: str | Path) -> int:
    """Write every held tick of ``symbol`` as CSV; returns the number of rows."""
    series = window.store.get(symbol)
    if series is None:
        raise KeyError(symbol)
    return export_ticks_csv(series, path)


def export_bars_csv_of(window: MainWindow, symbol: str, interval: float, path: str | Path) -> int:
    """Write every held candle of ``symbol`` at ``interval`` (history and live) as CSV."""
    series = window.store.get(symbol)
    if series is None:
        raise KeyError(symbol)
    return export_bars_csv(series, interval, path)


def ask_save_png(window: MainWindow) -> None:
    name = f"{window.current or 'grid'}-{time.strftime('%Y%m%d-%H%M%S')}.png"
    path, _ = QFileDialog.getSaveFileName(window, "Save chart as PNG", name, "PNG images (*.png)")
    if path and not save_chart_png(window, path):
        window.show_error(f"Could not save {path}")


def ask_export_csv(window: MainWindow) -> None:
    if window.current is None:
        window.show_error("Select a symbol to export its ticks.")
        return
    name = f"{window.current}-ticks-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    path, _ = QFileDialog.getSaveFileName(window, "Export ticks as CSV", name, "CSV files (*.csv)")
    if path:
        try:
            rows = export_csv(window, window.current, path)
        except OSError as exc:
            window.show_error(f"Could not export: {exc}")
        else:
            window.statusBar().showMessage(f"Exported {rows:,} ticks to {path}", 5000)


def ask_export_bars(window: MainWindow) -> None:
    if window.current is None:
        window.show_error("Select a symbol to export its bars.")
        return
    _, interval = window.chart_mode()
    name = f"{window.current}-bars-{interval:g}s-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    path, _ = QFileDialog.getSaveFileName(window, "Export bars as CSV", name, "CSV files (*.csv)")
    if path:
        try:
            rows = export_bars_csv_of(window, window.current, interval, path)
        except OSError as exc:
            window.show_error(f"Could not export: {exc}")
        else:
            window.statusBar().showMessage(f"Exported {rows:,} bars to {path}", 5000)


def restore_settings(window: MainWindow) -> None:
    """Put back the geometry, splitter and chart mode saved by :func:`save_settings`."""
    s = window.settings
    geometry = s.value("window/geometry")
    if isinstance(geometry, QByteArray):
        window.restoreGeometry(geometry)
    splitter = s.value("window/splitter")
    if isinstance(splitter, QByteArray):
        window.splitter.restoreState(splitter)
    # A first run opens on candles: a session of 1-minute bars is there at once.
    mode = s.value("chart/mode", "candles")
    window.mode_box.setCurrentIndex(max(0, window.mode_box.findData(mode)))
    try:
        interval = float(str(s.value("chart/interval", 60.0)))
    except ValueError:
        interval = 60.0
    window.interval_box.setCurrentIndex(max(0, window.interval_box.findData(interval)))
    if s.value("chart/view", "single") == "grid":
        window.grid_action.setChecked(True)
    window._mode_changed()


def save_settings(window: MainWindow) -> None:
    """Remember URL, symbols, chart mode and geometry for the next run."""
    s = window.settings
    if window.remember_url:
        s.setValue("connection/url", window.url)
    s.setValue("watchlist/symbols", ",".join(window.bridge.watched))
    s.setValue("chart/mode", window.mode_box.currentData())
    s.setValue("chart/interval", window.interval_box.currentData())
    s.setValue("chart/view", "grid" if window.grid_action.isChecked() else "single")
    s.setValue("window/geometry", window.saveGeometry())
    s.setValue("window/splitter", window.splitter.saveState())
    s.sync()


def offer_intervals(window: MainWindow, intervals: tuple[float, ...]) -> None:
    """Offer only ``intervals`` (the exact ones); keep the current one if it is offered."""
    if intervals == window.offered:
        return
    window.offered = intervals
    box = window.interval_box
    current = box.currentData()
    with QSignalBlocker(box):
        box.clear()
        for interval in intervals:
            box.addItem(INTERVAL_NAMES.get(interval, f"{interval:g} s"), interval)
        box.setCurrentIndex(max(0, box.findData(current)))
    box.setToolTip(
        "Candle widths that are whole multiples of the server's update window, so every"
        " candle is exact"
    )
    if current is not None and box.currentData() != current:
        window._mode_changed()
