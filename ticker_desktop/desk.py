"""The trading-desk features of the window: indicators, alerts, the tape, comparison, workspaces.

:class:`DeskFeatures` is built once by the window and installs its menus,
toolbar, docks and shortcuts; the window calls :meth:`DeskFeatures.on_frame`
from its one frame timer and :meth:`DeskFeatures.save` when it closes. The
alerts' part is :class:`~.desk_alerts.AlertDesk`.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QInputDialog,
    QToolBar,
)

from .desk_alerts import AlertDesk
from .indicators import IndicatorSpec
from .symbol_search import SymbolSearch
from .tape import TapeModel, TapeView
from .workspaces import Workspace, Workspaces, as_bytes

if TYPE_CHECKING:
    from .main_window import MainWindow

__all__ = ["DEFAULT_INDICATORS", "DeskFeatures"]

TAPE_EVERY = 6
"""The tape takes new rows on every n-th frame (about 10 Hz)."""
DEFAULT_INDICATORS = ("sma:20", "ema:50", "vwap", "bollinger", "rsi", "macd")
"""What the Indicators menu offers (SMA and EMA periods can be changed there)."""


class DeskFeatures(QObject):
    """Everything issue 14 adds to the window, installed in one place."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.settings = window.settings
        self.alerts = AlertDesk(window)
        self.workspaces = Workspaces(self.settings)
        self.indicator_keys = {
            "chart": self._saved_keys("chart", ["sma:20", "ema:50"]),
            "grid": self._saved_keys("grid", []),
        }
        self.compare: list[str] = []
        self._frame = 0
        self._build_docks()
        self._build_menus()
        self.apply_indicators()
        self.alerts.refresh()
        last = self.workspaces.last()
        if last is not None:
            ws = self.workspaces.load(last)
            if ws is not None:
                self.apply_workspace(ws, symbols=False)

    # -- construction --------------------------------------------------------------------

    def _saved_keys(self, chart: str, default: list[str]) -> list[str]:
        raw = self.settings.value(f"indicators/{chart}")
        keys = default if raw is None else [k for k in str(raw).split(",") if k]
        return [k for k in keys if _valid(k)]

    def _build_docks(self) -> None:
        w = self.w
        self.tape_model = TapeModel(w.store)
        self.tape_view = TapeView(self.tape_model)
        self.tape_dock = QDockWidget("Time and sales", w)
        self.tape_dock.setObjectName("tape_dock")
        self.tape_dock.setWidget(self.tape_view)
        w.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.tape_dock)
        w.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.alerts.dock)
        self.search = SymbolSearch(w)
        self.search.symbol_chosen.connect(self.open_symbol)

    def _build_menus(self) -> None:
        w = self.w
        menu = w.menuBar().addMenu("&Indicators")
        bar = QToolBar("Indicators")
        bar.setObjectName("indicators_toolbar")
        w.addToolBar(bar)
        self.indicator_actions: dict[str, QAction] = {}
        for key in DEFAULT_INDICATORS:
            action = QAction(IndicatorSpec.parse(key).label, w, checkable=True)
            action.setData(key)
            action.toggled.connect(self._indicator_toggled)
            menu.addAction(action)
            bar.addAction(action)
            self.indicator_actions[key.split(":")[0]] = action
        menu.addSeparator()
        menu.addAction("SMA &period…", lambda: self._ask_period("sma"))
        menu.addAction("EMA p&eriod…", lambda: self._ask_period("ema"))
        w.grid_action.toggled.connect(lambda _on: self._sync_indicator_actions())

        self.alerts.install_menu(w.menuBar().addMenu("&Alerts"))

        view = w.menuBar().addMenu("&Desk")
        self.search_action = view.addAction("&Find symbol…", self.open_search)
        self.search_action.setShortcut(QKeySequence("Ctrl+K"))
        self.search_action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        self.log_action = view.addAction("&Log price scale")
        self.log_action.setCheckable(True)
        self.log_action.setShortcut(QKeySequence("Ctrl+Shift+L"))
        self.log_action.toggled.connect(self.set_log)
        view.addAction("&Compare with…", self._ask_compare)
        view.addAction("Clear comparison", lambda: self.set_compare([]))
        view.addAction(self.tape_dock.toggleViewAction())
        view.addSeparator()
        view.addAction("&Save workspace as…", self._ask_save_workspace)
        self.workspace_menu = view.addMenu("&Open workspace")
        self.workspace_menu.aboutToShow.connect(self._fill_workspace_menu)

    # -- indicators ------------------------------------------------------------------------

    def chart_key(self) -> str:
        return "grid" if self.w.grid_action.isChecked() else "chart"

    def set_indicators(self, chart: str, keys: list[str]) -> None:
        """Show the indicators ``keys`` (``sma:20``, ``rsi``…) on ``chart`` ("chart" or "grid")."""
        self.indicator_keys[chart] = [k for k in keys if _valid(k)]
        self.apply_indicators()

    def apply_indicators(self) -> None:
        keys = self.indicator_keys
        self.w.chart.pane.set_indicators([IndicatorSpec.parse(k) for k in keys["chart"]])
        self.w.grid.set_indicators([IndicatorSpec.parse(k) for k in keys["grid"]])
        self._sync_indicator_actions()

    def _sync_indicator_actions(self) -> None:
        active = {k.split(":")[0]: k for k in self.indicator_keys[self.chart_key()]}
        for kind, action in self.indicator_actions.items():
            key = active.get(kind, str(action.data()))
            action.blockSignals(True)
            action.setChecked(kind in active)
            action.setData(key)
            action.setText(IndicatorSpec.parse(key).label)
            action.blockSignals(False)

    def _indicator_toggled(self, *_: Any) -> None:
        keys = [str(a.data()) for a in self.indicator_actions.values() if a.isChecked()]
        self.set_indicators(self.chart_key(), keys)

    def _ask_period(self, kind: str) -> None:
        action = self.indicator_actions[kind]
        current = IndicatorSpec.parse(str(action.data())).period
        period, ok = QInputDialog.getInt(
            self.w, f"{kind.upper()} period", "Period", current, 1, 1000
        )
        if ok:
            action.setData(f"{kind}:{period}")
            action.setChecked(True)
            self._indicator_toggled()

    # -- comparison, search ---------------------------------------------------------------

    def set_compare(self, symbols: list[str]) -> None:
        """Overlay ``symbols`` (watched ones) on the large chart, in percent (a linear scale)."""
        own = self.w.chart.pane.symbol
        self.compare = [s for s in symbols if s in self.w.store and s != own]
        if self.compare:
            self.log_action.setChecked(False)
        self.w.chart.pane.set_comparison(self.compare)

    def set_log(self, log: bool) -> None:
        """A log price scale on the large chart (it ends a percent comparison)."""
        if log and self.compare:
            self.set_compare([])
        self.log_action.setChecked(log)
        self.w.chart.pane.set_log(log)

    def _ask_compare(self) -> None:
        text, ok = QInputDialog.getText(self.w, "Compare", "Symbols (watched), comma-separated")
        if ok:
            self.set_compare([s.strip().upper() for s in text.replace(" ", ",").split(",") if s])

    def open_search(self) -> None:
        names = self.w.completer_symbols()
        for symbol in self.w.store.symbols:
            if symbol not in names:
                names.append(symbol)
        labels = [f"{s}   {self.w.model.names.get(s, '')}".rstrip() for s in names]
        self.search.open_with(labels)

    def open_symbol(self, symbol: str) -> None:
        """Open ``symbol``'s chart from anywhere (watching it first if need be)."""
        if symbol not in self.w.store:
            self.w.add_symbols(symbol)
        self.w.show_symbol(symbol)
        self.w.single_action.setChecked(True)

    # -- workspaces --------------------------------------------------------------------------

    def capture(self) -> Workspace:
        w = self.w
        mode, interval = w.chart_mode()
        return Workspace(
            symbols=list(w.store.symbols),
            view="grid" if w.grid_action.isChecked() else "single",
            selected=w.current,
            mode=mode,
            interval=interval,
            indicators={k: list(v) for k, v in self.indicator_keys.items()},
            compare=list(self.compare),
            log_scale=self.log_action.isChecked(),
            geometry=as_bytes(w.saveGeometry()),
            splitter=as_bytes(w.splitter.saveState()),
            window_state=as_bytes(w.saveState()),
        )

    def apply_workspace(self, ws: Workspace, symbols: bool = True) -> None:
        """Restore ``ws``; its symbols too unless ``symbols`` is False (at start the watchlist
        is the last session's)."""
        w = self.w
        if symbols and ws.symbols:
            gone = [s for s in w.store.symbols if s not in ws.symbols]
            if gone:
                w.bridge.unwatch(gone)
            w.bridge.watch(ws.symbols)
        w.mode_box.setCurrentIndex(max(0, w.mode_box.findData(ws.mode)))
        w.interval_box.setCurrentIndex(max(0, w.interval_box.findData(ws.interval)))
        (w.grid_action if ws.view == "grid" else w.single_action).setChecked(True)
        self.indicator_keys = {
            "chart": list(ws.indicators.get("chart", [])),
            "grid": list(ws.indicators.get("grid", [])),
        }
        self.apply_indicators()
        if ws.geometry:
            w.restoreGeometry(ws.geometry)
        if ws.splitter:
            w.splitter.restoreState(ws.splitter)
        if ws.window_state:
            w.restoreState(ws.window_state)
        if ws.selected:
            w.show_symbol(ws.selected)
        self.set_log(ws.log_scale)
        self.set_compare(ws.compare)

    def save_workspace(self, name: str) -> None:
        self.workspaces.save(name, self.capture())
        self.w.statusBar().showMessage(f"Workspace {name!r} saved", 4000)

    def load_workspace(self, name: str) -> bool:
        ws = self.workspaces.load(name)
        if ws is None:
            return False
        self.apply_workspace(ws)
        self.workspaces.mark_used(name)
        return True

    def _ask_save_workspace(self) -> None:
        name, ok = QInputDialog.getText(self.w, "Save workspace", "Name")
        if ok and name.strip():
            try:
                self.save_workspace(name)
            except ValueError as exc:
                self.w.show_error(str(exc))

    def _fill_workspace_menu(self) -> None:
        self.workspace_menu.clear()
        for name in self.workspaces.names():
            action = self.workspace_menu.addAction(name)
            action.triggered.connect(partial(self.load_workspace, name))
        if not self.workspace_menu.actions():
            self.workspace_menu.addAction("(none saved)").setEnabled(False)

    # -- per frame, on close -------------------------------------------------------------------

    def on_frame(self) -> None:
        """Called by the window's frame timer: check alerts, feed the tape."""
        self.alerts.check()
        current = self.w.current
        if self.tape_model.symbol != current:
            self.tape_model.set_symbol(current)
            self.alerts.refresh()
        self._frame += 1
        # The tape at 10 Hz: a 100 ticks/s symbol still shows every update, in batches of ten.
        if self.tape_dock.isVisible() and self._frame % TAPE_EVERY == 0:
            self.tape_model.refresh()

    def save(self) -> None:
        for chart, keys in self.indicator_keys.items():
            self.settings.setValue(f"indicators/{chart}", ",".join(keys))
        self.alerts.save()


def _valid(key: str) -> bool:
    try:
        IndicatorSpec.parse(key)
    except ValueError:
        return False
    return True
