"""The desk's alerts: the book, its panel and dock, the chart and watchlist menus, firing.

Alerts are checked on every frame against the rows the store appended since the
last check (every update, merged ones by their high and low, see
:mod:`.alerts`), so one fires within a frame (16 ms) of its update reaching the
window: a desktop notification where there is a system tray (a beep where there
is not), the status bar, and the symbol's watchlist row highlighted until it is
selected.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QKeySequence, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QInputDialog,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QSystemTrayIcon,
)

from .alerts import Alert, AlertBook
from .alerts_panel import AlertsModel, AlertsView, SavedAlerts
from .theme import ACCENT

if TYPE_CHECKING:
    from .main_window import MainWindow

__all__ = ["AlertDesk"]


class _AlertedDelegate(QStyledItemDelegate):
    """Paints the watchlist rows of symbols whose alert fired with an accent background."""

    def __init__(self, desk: AlertDesk) -> None:
        super().__init__()
        self.desk = desk

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        symbol = index.model().index(index.row(), 0).data()
        if symbol in self.desk.alerted and not option.state & QStyle.StateFlag.State_Selected:
            color = ACCENT.darker(260)
            painter.fillRect(option.rect, color)
        super().paint(painter, option, index)


class AlertDesk(QObject):
    """The window's alerts."""

    alert_fired = Signal(object)
    """An :class:`~.alerts.Alert` that just triggered."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.book = AlertBook()
        self.saved = SavedAlerts(window.settings)
        self.saved.load(self.book)
        self.alerted: set[str] = set()
        """Symbols whose alert fired (highlighted in the watchlist until selected)."""
        self.fired_at: dict[int, float] = {}
        """Alert id -> wall time it fired (minus its ``triggered``: the tick-to-alert delay)."""
        self.fire_lag: dict[int, float] = {}
        """Alert id -> seconds from the store taking the symbol's newest update to the alert
        firing: the desk's own share of the delay (the rest is the network and the server)."""
        self._checked: dict[str, int] = {}
        self.model = AlertsModel(self.book)
        self.view = AlertsView(self.model)
        self.view.remove_requested.connect(self.remove)
        self.dock = QDockWidget("Alerts", window)
        self.dock.setObjectName("alerts_dock")
        self.dock.setWidget(self.view)
        self.tray = QSystemTrayIcon(window) if QSystemTrayIcon.isSystemTrayAvailable() else None
        if self.tray is not None:
            self.tray.setIcon(window.windowIcon())
            self.tray.show()
        window.watchlist.setItemDelegateForColumn(0, _AlertedDelegate(self))
        window.watchlist.menu_extensions.append(self._watchlist_menu)
        window.watchlist.symbol_selected.connect(self._seen)
        window.chart.scene().sigMouseClicked.connect(self._chart_clicked)
        window.bridge.watched_changed.connect(lambda _symbols: self.refresh())

    def install_menu(self, menu: QMenu) -> None:
        self.add_action = menu.addAction("&Add alert for the selected symbol…")
        self.add_action.triggered.connect(lambda: self.ask(self.w.current))
        self.add_action.setShortcut(QKeySequence("Alt+A"))
        menu.addAction(self.dock.toggleViewAction())

    def save(self) -> None:
        self.saved.save(self.book)

    def add(self, symbol: str, level: float, condition: str | None = None) -> Alert:
        """Make an alert on ``symbol`` at ``level`` (condition from the last price if not given)."""
        series = self.w.store.get(symbol)
        price = series.last.price if series is not None and series.last is not None else None
        alert = self.book.add(
            symbol, level, time.time(), price, "above" if condition == "above" else
            "below" if condition == "below" else None,
        )  # fmt: skip
        if series is not None:
            self._checked[symbol] = series.ticks.added
        self.saved.save(self.book)
        self.refresh()
        self.w.statusBar().showMessage(f"Alert set: {alert.describe}", 4000)
        return alert

    def remove(self, ids: list[int]) -> None:
        for alert_id in ids:
            self.book.remove(alert_id)
        self.saved.save(self.book)
        self.refresh()

    def ask(self, symbol: str | None, level: float | None = None) -> None:
        if symbol is None:
            self.w.show_error("Select a symbol to set an alert on.")
            return
        series = self.w.store.get(symbol)
        if level is None:
            level = series.last.price if series is not None and series.last is not None else 0.0
        value, ok = QInputDialog.getDouble(
            self.w, f"Alert on {symbol}", "Alert when the price crosses", level, 0.0001, 1e9, 2
        )
        if ok and value > 0:
            self.add(symbol, value)

    def refresh(self) -> None:
        """Show the book: the panel and the dashed lines on every chart."""
        self.model.reload()
        panes = [self.w.chart.pane, *self.w.grid.panes.values()]
        for pane in panes:
            levels = {
                a.id: (a.level, a.condition) for a in self.book.waiting(pane.symbol)
            } if pane.symbol else {}  # fmt: skip
            pane.alert_lines.set_levels(levels)
            pane.refresh(force=True)

    def check(self) -> list[Alert]:
        """Check each alerted symbol's new updates; fire what crossed."""
        fired: list[Alert] = []
        for symbol in self.book.symbols():
            series = self.w.store.get(symbol)
            if series is None:
                continue
            ticks = series.ticks
            seen = self._checked.get(symbol, ticks.evicted)
            if ticks.added < seen:
                seen = ticks.evicted  # removed and added again: its buffer started over
            start = max(seen, ticks.evicted) - ticks.evicted
            if start >= len(ticks):
                continue
            self._checked[symbol] = ticks.added
            cols = [ticks.column(c)[start:] for c in ("price", "high", "low", "ts")]
            fired += self.book.check(symbol, *cols)
        for alert in fired:
            self._fire(alert)
        if fired:
            self.saved.save(self.book)
            self.refresh()
        return fired

    def _fire(self, alert: Alert) -> None:
        self.fired_at[alert.id] = time.time()
        series = self.w.store.get(alert.symbol)
        if series is not None and series.updated_at is not None:
            self.fire_lag[alert.id] = time.monotonic() - series.updated_at
        self.alerted.add(alert.symbol)
        text = f"Alert: {alert.describe} (at {alert.price:,.2f})"
        self.w.statusBar().showMessage(text, 15_000)
        if self.tray is not None:
            self.tray.showMessage("ticker alert", text, QSystemTrayIcon.MessageIcon.Information)
        else:
            QApplication.beep()
        self.w.watchlist.viewport().update()
        self.alert_fired.emit(alert)

    def _chart_clicked(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.RightButton:
            return
        pane = self.w.chart.pane
        if pane.symbol is None or not pane.plot.vb.sceneBoundingRect().contains(event.scenePos()):
            return
        price = float(pane.plot.vb.mapSceneToView(event.scenePos()).y())
        self.chart_menu(pane.symbol, price).popup(event.screenPos().toPoint())
        event.accept()

    def chart_menu(self, symbol: str, price: float) -> QMenu:
        """The chart's right-click menu: an alert at the clicked price."""
        menu = QMenu(self.w)
        menu.addAction(f"Alert {symbol} at {price:,.2f}", lambda: self.add(symbol, price))
        menu.addAction("Alert at another price…", lambda: self.ask(symbol, round(price, 2)))
        return menu

    def _watchlist_menu(self, menu: QMenu, symbols: list[str]) -> None:
        menu.addSeparator()
        action = menu.addAction(f"Alert on {symbols[0]}…")
        action.triggered.connect(lambda: self.ask(symbols[0]))

    def _seen(self, symbol: str) -> None:
        if symbol in self.alerted:
            self.alerted.discard(symbol)
            self.w.watchlist.viewport().update()
