"""The dashboard window: symbol box, watchlist, charts, status bar, menus and settings.

One :class:`QTimer` drives every repaint: at most 60 times a second it takes
the symbols the store marks as changed and refreshes only those charts; the
watchlist and status bar refresh on every sixth frame. Closing the window
emits :attr:`MainWindow.closed`; whoever runs the window then awaits
:meth:`MainWindow.shutdown`, which closes the connection and its tasks.

The window does not build its connection: the composition root
(:func:`~.app.make_window`) hands it a :class:`~.bridge.ClientBridge` whose
client and store share one :class:`~.watched.WatchedSymbols`, and the window
only reads that set and asks the bridge to change it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QLabel,
    QLineEdit,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ticker_server.protocol import Error, Hello, SymbolInfo

from .bridge import ClientBridge
from .buffers import exact_intervals, suited_rate
from .charts import ChartGrid, ChartMode, FrameStats, SymbolChart
from .client import ClientOptions, ConnectionState, ServerError, StateChanged
from .desk import DeskFeatures
from .status import ConnectionStatus
from .store import MarketStore
from .watchlist import WatchlistModel, WatchlistView
from .window_menus import (
    build_menus,
    export_bars_csv_of,
    export_csv,
    offer_intervals,
    restore_settings,
    save_chart_png,
    save_settings,
)

__all__ = ["DEFAULT_SYMBOLS", "DEFAULT_URL", "MainWindow", "dashboard_options"]

log = logging.getLogger("ticker_desktop.window")

DEFAULT_URL = "ws://127.0.0.1:8765"
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "TSLA")
FRAME_MS = 16
"""Frame timer period: at most about 60 repaints a second."""
SLOW_EVERY = 6
"""Watchlist and status bar refresh on every n-th frame (about 10 Hz)."""
SYMBOL_ROLE = Qt.ItemDataRole.UserRole + 1
"""Completer role holding the bare symbol (QStandardItem shares Display and Edit roles)."""


def dashboard_options(options: ClientOptions | None = None) -> ClientOptions:
    """The client options the dashboard runs with: ``options``, asking for the rate that
    suits its candles (:func:`~.buffers.suited_rate`) unless they pick one already."""
    options = options or ClientOptions()
    if options.choose_rate is not None:
        return options
    return dataclasses.replace(options, choose_rate=suited_rate)


class MainWindow(QMainWindow):
    """The dashboard.

    Args:
        bridge: the client (not yet started) and its store, wired together; the window
            takes them over and closes them in :meth:`shutdown`.
        settings: where to remember URL, symbols, chart mode and geometry.
        remember_url: save the URL as the next run's default (not for a demo's random port).
    """

    closed = Signal()
    save_png_action: QAction
    export_action: QAction
    export_bars_action: QAction
    single_action: QAction
    grid_action: QAction
    live_action: QAction
    reconnect_action: QAction
    live_button: QAction

    def __init__(
        self, bridge: ClientBridge, settings: QSettings, remember_url: bool = True
    ) -> None:
        super().__init__()
        self.settings = settings
        self.bridge = bridge
        bridge.setParent(self)
        self.client = bridge.client
        self.store: MarketStore = bridge.store
        self.url = self.client.url
        self.remember_url = remember_url
        self.stats = FrameStats()
        self.current: str | None = None
        self._previous: str | None = None
        self.last_error: str | None = None
        self._frame = 0
        self._shut = False
        self.setWindowTitle(f"ticker — {self.client.shown_url}")
        self.resize(1440, 880)
        self._build_widgets()
        build_menus(self)
        self._connect()
        restore_settings(self)
        self._on_watched(self.bridge.watched)
        # Issue 14's desk (indicators, alerts, tape, comparison, workspaces): one object.
        self.desk = DeskFeatures(self)
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._on_frame)
        self.error_timer = QTimer(self, singleShot=True, interval=10_000)
        self.error_timer.timeout.connect(self.error_banner.hide)

    # -- construction ------------------------------------------------------------------

    def _build_widgets(self) -> None:
        self.symbol_box = QLineEdit(placeholderText="Add symbol (e.g. AAPL) and press Enter")
        self.symbol_box.setClearButtonEnabled(True)
        self.symbol_box.setMaximumWidth(300)
        self.symbol_names = QStandardItemModel(self)
        self.completer = QCompleter(self.symbol_names, self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setCompletionRole(SYMBOL_ROLE)
        self.completer.setFilterMode(Qt.MatchFlag.MatchStartsWith)
        self.symbol_box.setCompleter(self.completer)
        self.mode_box = QComboBox()
        self.mode_box.addItem("Line", "line")
        self.mode_box.addItem("Candles", "candles")
        self.interval_box = QComboBox()
        self.offered: tuple[float, ...] = ()
        offer_intervals(self, self.store.intervals)
        self.error_banner = QLabel()
        self.error_banner.setObjectName("errorBanner")
        self.error_banner.setStyleSheet(
            "#errorBanner { background: #4a1c1f; color: #ffb4b0; padding: 6px 10px;"
            " border-bottom: 1px solid #ef5350; }"
        )
        self.error_banner.setWordWrap(True)
        self.error_banner.hide()
        self.model = WatchlistModel(self.store)
        self.watchlist = WatchlistView(self.model)
        self.chart = SymbolChart(self.store, self.stats)
        self.grid = ChartGrid(self.store, self.stats)
        self.chart.pane.history = self.grid.history = self.bridge.history
        self.charts = QStackedWidget()
        self.charts.addWidget(self.chart)
        self.charts.addWidget(self.grid)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.watchlist)
        self.splitter.addWidget(self.charts)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([560, 880])
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.error_banner)
        layout.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        self.status = ConnectionStatus()
        self.setStatusBar(self.status)

    def _connect(self) -> None:
        self.symbol_box.returnPressed.connect(self._add_from_box)
        self.completer.activated.connect(lambda _text: QTimer.singleShot(0, self._add_from_box))
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.interval_box.currentIndexChanged.connect(self._mode_changed)
        self.watchlist.symbol_selected.connect(self.show_symbol)
        self.watchlist.remove_requested.connect(self.bridge.unwatch)
        self.grid.signals.symbol_activated.connect(self._open_from_grid)
        self.bridge.state_changed.connect(self._on_state)
        self.bridge.hello_received.connect(self._on_hello)
        self.bridge.symbols_listed.connect(self._on_symbols)
        self.bridge.watched_changed.connect(self._on_watched)
        self.bridge.server_error.connect(self._on_server_error)
        self.bridge.input_rejected.connect(self.status.show_rejected)

    def save_settings(self) -> None:
        save_settings(self)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the frame timer (needs a running loop)."""
        self.bridge.start()
        self.timer.start(FRAME_MS)

    async def shutdown(self) -> None:
        """Stop painting and close the connection; safe to call more than once."""
        if self._shut:
            return
        self._shut = True
        self.timer.stop()
        self.error_timer.stop()
        await self.bridge.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_settings()
        self.desk.save()
        self.timer.stop()
        event.accept()
        self.closed.emit()

    # -- user actions ------------------------------------------------------------------

    def add_symbols(self, text: str) -> None:
        """Watch the comma- or space-separated symbols in ``text``."""
        symbols = [s for s in text.replace(",", " ").upper().split() if s]
        if symbols:
            self.bridge.watch(symbols)
            self.show_symbol(symbols[-1])

    def _add_from_box(self) -> None:
        self.add_symbols(self.symbol_box.text())
        self.symbol_box.clear()

    def show_symbol(self, symbol: str | None) -> None:
        """Show ``symbol`` in the large chart and select its row."""
        if symbol is not None and symbol not in self.store:
            return
        if symbol != self.current:
            if self.current is not None:
                self._previous = self.current
            self.current = symbol
            self.chart.set_symbol(symbol)
        if symbol is not None:
            self.watchlist.select_symbol(symbol)

    def _open_from_grid(self, symbol: str) -> None:
        self.show_symbol(symbol)
        self.single_action.setChecked(True)

    def go_live(self) -> None:
        self.chart.pane.go_live()
        self.grid.go_live()

    def chart_mode(self) -> tuple[ChartMode, float]:
        mode: ChartMode = "candles" if self.mode_box.currentData() == "candles" else "line"
        return mode, float(self.interval_box.currentData())

    def _mode_changed(self, *_: Any) -> None:
        mode, interval = self.chart_mode()
        self.chart.pane.set_mode(mode, interval)
        self.grid.set_mode(mode, interval)

    def _view_toggled(self, *_: Any) -> None:
        self.charts.setCurrentWidget(self.grid if self.grid_action.isChecked() else self.chart)
        self._refresh_charts(force=True)

    def current_chart(self) -> SymbolChart | ChartGrid:
        return self.grid if self.grid_action.isChecked() else self.chart

    def save_chart_png(self, path: str | Path) -> bool:
        """Save what the chart area shows as a PNG."""
        return save_chart_png(self, path)

    def export_csv(self, symbol: str, path: str | Path) -> int:
        """Write every held tick of ``symbol`` as CSV; returns the number of rows."""
        return export_csv(self, symbol, path)

    def export_bars_csv(self, symbol: str, interval: float, path: str | Path) -> int:
        """Write every held candle of ``symbol`` at ``interval`` as CSV; returns the rows."""
        return export_bars_csv_of(self, symbol, interval, path)

    def show_error(self, text: str) -> None:
        """Show an error above the charts for a few seconds."""
        self.last_error = text
        self.error_banner.setText(text)
        self.error_banner.show()
        self.error_timer.start()

    # -- client signals --------------------------------------------------------------------

    def _on_state(self, event: StateChanged) -> None:
        self.status.show_state(event)
        live = event.state is ConnectionState.LIVE
        if live or event.state in (ConnectionState.RECONNECTING, ConnectionState.ERROR):
            self.model.set_connected(live)
            self.chart.pane.set_connected(live)
            self.grid.set_connected(live)

    def _on_hello(self, hello: Hello) -> None:
        known = {
            self.symbol_names.item(r).data(SYMBOL_ROLE) for r in range(self.symbol_names.rowCount())
        }
        for symbol in hello.symbols:
            if symbol not in known:
                item = QStandardItem(symbol)
                item.setData(symbol, SYMBOL_ROLE)
                self.symbol_names.appendRow(item)
        self.bridge.request_symbols()

    def _on_symbols(self, infos: list[SymbolInfo]) -> None:
        self.symbol_names.clear()
        for info in infos:
            item = QStandardItem()
            item.setData(f"{info.symbol}   {info.name}", Qt.ItemDataRole.DisplayRole)
            item.setData(info.symbol, SYMBOL_ROLE)
            self.symbol_names.appendRow(item)
            self.model.names[info.symbol] = info.name

    def completer_symbols(self) -> list[str]:
        """The symbols the symbol box offers."""
        return [
            str(self.symbol_names.item(r).data(SYMBOL_ROLE))
            for r in range(self.symbol_names.rowCount())
        ]

    def _on_watched(self, symbols: list[str]) -> None:
        self.model.sync()
        self.grid.set_symbols(symbols)
        if self.current not in symbols:
            # Back to what was shown before (an unknown symbol never stays the view).
            first = symbols[0] if symbols else None
            back = self._previous if self._previous in symbols else first
            self.current = None
            self.show_symbol(back)
            if not symbols:
                self.chart.set_symbol(None)

    def _on_server_error(self, event: ServerError) -> None:
        error: Error = event.error
        self.show_error(f"Server error ({error.code}): {error.message}")

    # -- painting ----------------------------------------------------------------------------

    def _on_frame(self) -> None:
        self._refresh_charts()
        self.desk.on_frame()
        self._frame += 1
        if self._frame % SLOW_EVERY == 0:
            offer_intervals(self, exact_intervals(self.client.granted_rate, self.store.intervals))
            self.model.refresh()
            self.status.tick()
            self._show_following()
            latencies = list(self.stats.latencies)[-60:]
            self.status.show_figures(
                self.client.rtt,
                FrameStats.percentile(latencies, 50),
                self.store.received.rate(time.monotonic()),
                self.store.conflated,
            )

    def _show_following(self) -> None:
        chart = self.current_chart()
        panes = list(chart.panes.values()) if isinstance(chart, ChartGrid) else [chart.pane]
        for pane in panes:
            if pane.symbol is not None:
                pane.set_stale(self.store.is_stale(pane.symbol))
        following = all(p.following for p in panes)
        self.live_button.setText("● Live" if following else "▶ Back to live")
        self.live_button.setEnabled(not following)

    def _refresh_charts(self, force: bool = False) -> None:
        dirty = self.store.take_dirty()
        self.current_chart().refresh(dirty, force)
