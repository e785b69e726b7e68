"""The watchlist: a table model over the store, and the view that shows it.

The model reads the :class:`~.store.MarketStore` directly; the window calls
:meth:`WatchlistModel.refresh` a few times a second, which emits one
``dataChanged`` for the rows, so the table repaints once per refresh however
many ticks arrived. Last-price cells flash green or red on up or down ticks
and fade out; stale symbols, and everything while disconnected, are greyed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QFont, QKeyEvent
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QMenu, QTableView, QWidget

from .store import MarketStore, SymbolSeries
from .theme import DOWN, MUTED, TEXT, UP

__all__ = ["COLUMNS", "SORT_ROLE", "WatchlistModel", "WatchlistView"]

COLUMNS = ("Symbol", "Last", "Chg", "Chg %", "Bid", "Ask", "Volume", "Upd/s")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
FLASH_SECONDS = 0.4
_LAST, _CHG, _PCT = 1, 2, 3
_Index = QModelIndex | QPersistentModelIndex


def _price(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"


class WatchlistModel(QAbstractTableModel):
    """One row per watched symbol, read from the store; :meth:`sync` follows the watched set.

    Args:
        store: the market data.
        clock: monotonic seconds (the store's clock), for flashes.
    """

    def __init__(
        self, store: MarketStore, clock: Callable[[], float] = time.monotonic, parent: Any = None
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.clock = clock
        self.connected = True
        self.names: dict[str, str] = {}
        """Company names from list_symbols, for tooltips."""
        self._symbols: list[str] = []
        """The rows as views know them: Qt must hear of a removal while the old order holds."""
        self.sync()

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    def sync(self) -> None:
        """Make the rows the store's watched symbols (rows are inserted or removed, not reset)."""
        symbols = self.store.watched.symbols
        for symbol in [s for s in self._symbols if s not in symbols]:
            row = self._symbols.index(symbol)
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._symbols[row]
            self.endRemoveRows()
        for symbol in [s for s in symbols if s not in self._symbols]:
            row = len(self._symbols)
            self.beginInsertRows(QModelIndex(), row, row)
            self._symbols.append(symbol)
            self.endInsertRows()

    def set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self.refresh()

    def refresh(self) -> None:
        """Tell views that every row may have changed (one signal for the whole table)."""
        if self._symbols:
            self.dataChanged.emit(
                self.index(0, 0), self.index(len(self._symbols) - 1, len(COLUMNS) - 1)
            )

    def symbol_at(self, row: int) -> str:
        return self._symbols[row]

    # -- QAbstractTableModel -------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._symbols)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole:
                return COLUMNS[section]
            if role == Qt.ItemDataRole.TextAlignmentRole and section > 0:
                return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        symbol = self._symbols[index.row()]
        series = self.store.get(symbol)
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(symbol, series, column)
        if role == SORT_ROLE:
            return self._value(symbol, series, column)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if column == 0:
                return Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._foreground(symbol, series, column)
        if role == Qt.ItemDataRole.BackgroundRole and column == _LAST and series is not None:
            return self._flash(series)
        if role == Qt.ItemDataRole.FontRole and column == 0:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(symbol, series)
        return None

    def _value(self, symbol: str, series: SymbolSeries | None, column: int) -> Any:
        if column == 0:
            return symbol
        last = series.last if series else None
        if series is None or last is None:
            return float("-inf")
        values: tuple[float | None, ...] = (
            None,
            last.price,
            series.change,
            series.change_pct,
            last.bid,
            last.ask,
            float(last.volume),
            series.updates.rate(self.clock()),
        )
        value = values[column]
        return float("-inf") if value is None else value

    def _text(self, symbol: str, series: SymbolSeries | None, column: int) -> str:
        if column == 0:
            return symbol
        last = series.last if series else None
        if series is None or last is None:
            return "—"
        if column == _LAST:
            return _price(last.price)
        if column == _CHG:
            change = series.change
            return "—" if change is None else f"{change:+,.2f}"
        if column == _PCT:
            pct = series.change_pct
            return "—" if pct is None else f"{pct:+.2f}%"
        if column == 4:
            return _price(last.bid)
        if column == 5:
            return _price(last.ask)
        if column == 6:
            return f"{last.volume:,}"
        return f"{series.updates.rate(self.clock()):.1f}"

    def _foreground(self, symbol: str, series: SymbolSeries | None, column: int) -> QColor:
        if not self.connected or self.store.is_stale(symbol):
            return MUTED
        if column in (_CHG, _PCT) and series is not None:
            change = series.change or 0.0
            return UP if change > 0 else DOWN if change < 0 else TEXT
        return TEXT

    def _flash(self, series: SymbolSeries) -> QColor | None:
        age = self.clock() - series.changed_at
        if not self.connected or age >= FLASH_SECONDS or series.direction == 0:
            return None
        color = QColor(UP if series.direction > 0 else DOWN)
        color.setAlpha(int(130 * (1.0 - age / FLASH_SECONDS)))
        return color

    def _tooltip(self, symbol: str, series: SymbolSeries | None) -> str:
        lines = [f"{symbol} — {self.names[symbol]}" if symbol in self.names else symbol]
        if series is not None:
            if series.updated_at is not None and self.store.is_stale(symbol):
                lines.append(f"stale: no update for {self.clock() - series.updated_at:.0f} s")
            if series.missed:
                lines.append(f"{series.missed} ticks missed (history no longer held)")
        if not self.connected:
            lines.append("disconnected")
        return "\n".join(lines)


class WatchlistView(QTableView):
    """The sortable watchlist; Delete or the context menu removes symbols."""

    symbol_selected = Signal(str)
    remove_requested = Signal(list)

    def __init__(self, model: WatchlistModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = model
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setDynamicSortFilter(True)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        # Insertion order until a header is clicked.
        self.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(24)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setHighlightSections(False)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.selectionModel().currentRowChanged.connect(self._current_changed)
        self.menu_extensions: list[Callable[[QMenu, list[str]], None]] = []
        """Called with the row menu and its symbols, to add entries (the desk's alerts)."""

    def selected_symbols(self) -> list[str]:
        rows = {self.proxy.mapToSource(i).row() for i in self.selectionModel().selectedRows()}
        return [self.source.symbol_at(r) for r in sorted(rows)]

    def select_symbol(self, symbol: str) -> None:
        if symbol not in self.source.symbols:
            return
        source = self.source.index(self.source.symbols.index(symbol), 0)
        self.selectRow(self.proxy.mapFromSource(source).row())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            symbols = self.selected_symbols()
            if symbols:
                self.remove_requested.emit(symbols)
                return
        super().keyPressEvent(event)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.symbol_selected.emit(self.source.symbol_at(self.proxy.mapToSource(current).row()))

    def _menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if not index.isValid():
            return
        if not self.selectionModel().isRowSelected(index.row(), QModelIndex()):
            self.selectRow(index.row())
        self.context_menu(self.selected_symbols()).exec(self.viewport().mapToGlobal(pos))

    def context_menu(self, symbols: list[str]) -> QMenu:
        """The row menu for ``symbols``: remove them, or show the first one's chart."""
        menu = QMenu(self)
        show = QAction(f"Show {symbols[0]} chart", menu)
        show.triggered.connect(lambda: self.symbol_selected.emit(symbols[0]))
        remove = QAction(f"Remove {', '.join(symbols)}", menu)
        remove.setShortcut(Qt.Key.Key_Delete)
        remove.triggered.connect(lambda: self.remove_requested.emit(symbols))
        menu.addAction(show)
        menu.addAction(remove)
        for extend in self.menu_extensions:
            extend(menu, symbols)
        return menu
