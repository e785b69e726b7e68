"""Time and sales: the newest trades of the selected symbol, newest on top.

:class:`TapeRows` is the pure part: a bounded list of rows with the tick rule
(up, down or the direction of the last change). :class:`TapeModel` reads the
rows the store appended since it last looked (by absolute row index, so no tick
is shown twice or skipped) and inserts them at the top in one batch per frame,
so a tape at 100 ticks/s costs one model update per frame, not one per tick.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, NamedTuple

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from .store import MarketStore
from .theme import ACCENT, DOWN, MUTED, UP

__all__ = ["TAPE_ROWS", "TapeModel", "TapeRow", "TapeRows", "TapeView"]

TAPE_ROWS = 500
"""Rows the tape keeps (older ones scroll away)."""
_Index = QModelIndex | QPersistentModelIndex


class TapeRow(NamedTuple):
    ts: float
    price: float
    size: int
    direction: int
    """+1 uptick, -1 downtick (a zero tick keeps the last change's direction)."""
    merged: int
    """How many trades this row stands for (1 unless the server conflated them)."""


class TapeRows:
    """The newest ``limit`` trades, newest first (pure)."""

    def __init__(self, limit: int = TAPE_ROWS) -> None:
        self.rows: deque[TapeRow] = deque(maxlen=limit)
        self._last: float | None = None
        self._direction = 0

    def clear(self) -> None:
        self.rows.clear()
        self._last = None
        self._direction = 0

    def extend(
        self, ts: list[float], price: list[float], size: list[int], merged: list[int]
    ) -> int:
        """Add trades (oldest first); returns how many rows were added (at most ``limit``).

        Rows beyond the limit drop off the bottom; the caller removes them first if it
        must tell a view (see :meth:`overflow`).
        """
        limit = self.rows.maxlen or len(ts)
        first = len(ts) - min(len(ts), limit)
        for i, (t, p, s, m) in enumerate(zip(ts, price, size, merged, strict=True)):
            if self._last is not None and p != self._last:
                self._direction = 1 if p > self._last else -1
            self._last = p
            if i >= first:
                self.rows.appendleft(TapeRow(t, p, s, self._direction, m))
        return len(ts) - first

    def overflow(self, adding: int) -> int:
        """How many of the oldest rows adding ``adding`` rows pushes out."""
        limit = self.rows.maxlen or 0
        return max(0, len(self.rows) + min(adding, limit) - limit)

    def drop_oldest(self, count: int) -> None:
        for _ in range(count):
            self.rows.pop()


class TapeModel(QAbstractTableModel):
    """The tape of one symbol, fed from the store's tick buffer."""

    HEADERS = ("Time", "Price", "Size", "")

    def __init__(self, store: MarketStore, limit: int = TAPE_ROWS) -> None:
        super().__init__()
        self.store = store
        self.tape = TapeRows(limit)
        self.symbol: str | None = None
        self._seen = 0
        """Absolute index of the next store row to show."""

    def set_symbol(self, symbol: str | None) -> None:
        """Show ``symbol``'s trades from its last ``limit`` held ones on."""
        if symbol == self.symbol:
            return
        self.beginResetModel()
        self.symbol = symbol
        self.tape.clear()
        series = self.store.get(symbol) if symbol else None
        limit = self.tape.rows.maxlen or TAPE_ROWS
        self._seen = 0 if series is None else max(series.ticks.evicted, series.ticks.added - limit)
        self.endResetModel()
        self.refresh()

    def refresh(self) -> int:
        """Take the trades the store appended since the last call; returns how many."""
        series = self.store.get(self.symbol) if self.symbol else None
        if series is None:
            return 0
        ticks = series.ticks
        if ticks.added < self._seen:  # the symbol was removed and added again
            self._seen = ticks.evicted
        start = max(self._seen, ticks.evicted) - ticks.evicted
        new = len(ticks) - start
        if new <= 0:
            return 0
        self._seen = ticks.added
        cols = {k: ticks.column(k)[start:].tolist() for k in ("ts", "price", "size", "merged")}
        drop = self.tape.overflow(new)
        if drop:
            held = len(self.tape.rows)
            self.beginRemoveRows(QModelIndex(), held - drop, held - 1)
            self.tape.drop_oldest(drop)
            self.endRemoveRows()
        self.beginInsertRows(QModelIndex(), 0, min(new, self.tape.rows.maxlen or new) - 1)
        self.tape.extend(cols["ts"], cols["price"], cols["size"], cols["merged"])
        self.endInsertRows()
        return new

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.tape.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.tape.rows):
            return None
        row = self.tape.rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return (
                    time.strftime("%H:%M:%S", time.localtime(row.ts))
                    + f".{int(row.ts % 1 * 1000):03d}"
                )
            if column == 1:
                return f"{row.price:,.2f}"
            if column == 2:
                return f"{row.size:,}"
            return f"×{row.merged}" if row.merged > 1 else ""  # noqa: RUF001
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == 3:
                return ACCENT
            return _direction_color(row.direction)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (1, 2):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and row.merged > 1:
            return f"one update for {row.merged} trades (conflated by the server)"
        return None


def _direction_color(direction: int) -> QColor:
    return UP if direction > 0 else DOWN if direction < 0 else MUTED


class TapeView(QTableView):
    """The tape's table: fixed row height, no sorting (the order is time)."""

    def __init__(self, model: TapeModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setModel(model)
        self.setObjectName("tape")
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.verticalHeader().setDefaultSectionSize(18)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
