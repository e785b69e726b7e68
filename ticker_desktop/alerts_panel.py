"""The alerts panel (a table of every alert) and where alerts are kept between runs (QSettings)."""

from __future__ import annotations

import json
import time
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSettings, Qt
from PySide6.QtCore import Signal as _Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from .alerts import Alert, AlertBook
from .theme import ACCENT, DOWN, MUTED, TEXT, UP

__all__ = ["AlertsModel", "AlertsView", "SavedAlerts"]

_Index = QModelIndex | QPersistentModelIndex
SETTINGS_KEY = "alerts/list"


class SavedAlerts:
    """Alerts in QSettings, as one JSON list (read at start, written on every change)."""

    def __init__(self, settings: QSettings) -> None:
        self.settings = settings

    def load(self, book: AlertBook) -> int:
        raw = self.settings.value(SETTINGS_KEY, "")
        try:
            records = json.loads(str(raw)) if raw else []
        except ValueError:
            records = []
        return (
            book.load(r for r in records if isinstance(r, dict)) if isinstance(records, list) else 0
        )

    def save(self, book: AlertBook) -> None:
        self.settings.setValue(SETTINGS_KEY, json.dumps(book.records()))
        self.settings.sync()


def _clock(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%H:%M:%S", time.localtime(ts))


class AlertsModel(QAbstractTableModel):
    """Every alert: symbol, condition, created, triggered (newest first)."""

    HEADERS = ("Symbol", "Condition", "Created", "Triggered")

    def __init__(self, book: AlertBook) -> None:
        super().__init__()
        self.book = book
        self._rows: list[Alert] = []

    def reload(self) -> None:
        """Show the book as it is now."""
        self.beginResetModel()
        self._rows = sorted(self.book, key=lambda a: a.id, reverse=True)
        self.endResetModel()

    def alert_at(self, row: int) -> Alert:
        return self._rows[row]

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        alert = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return alert.symbol
            if column == 1:
                return (
                    f"{'▲ above' if alert.condition == 'above' else '▼ below'} {alert.level:,.2f}"
                )
            if column == 2:
                return _clock(alert.created)
            if alert.triggered is None:
                return "waiting"
            return f"{_clock(alert.triggered)} at {alert.price:,.2f}"
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == 1:
                return UP if alert.condition == "above" else DOWN
            if column == 3:
                return ACCENT if alert.triggered is not None else MUTED
            return TEXT
        return None


class AlertsView(QTableView):
    """The alerts table; Delete removes the selected alerts."""

    remove_requested = _Signal(list)

    def __init__(self, model: AlertsModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = model
        self.setModel(model)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setShowGrid(False)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(22)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.setObjectName("alerts")

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            rows = {i.row() for i in self.selectionModel().selectedRows()}
            if rows:
                self.remove_requested.emit([self.source.alert_at(r).id for r in sorted(rows)])
                return
        super().keyPressEvent(event)
