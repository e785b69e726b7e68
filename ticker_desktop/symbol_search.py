"""Quick symbol search (Ctrl+K): type a few letters, Enter opens that symbol's chart."""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, QStringListModel, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QDialog, QLineEdit, QListView, QVBoxLayout, QWidget

__all__ = ["SymbolSearch"]


class SymbolSearch(QDialog):
    """A small popup over the window: a filter box and the matching symbols.

    ``symbol_chosen`` carries the highlighted match, or the typed text itself when
    nothing matches (so an unlisted symbol can still be asked for).
    """

    symbol_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Popup)
        self.setObjectName("symbolSearch")
        self.setMinimumWidth(360)
        self.box = QLineEdit(placeholderText="Search symbols (Enter opens the chart)")
        self.names = QStringListModel(self)
        self.filtered = QSortFilterProxyModel(self)
        self.filtered.setSourceModel(self.names)
        self.filtered.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.list = QListView()
        self.list.setModel(self.filtered)
        self.list.setEditTriggers(QListView.EditTrigger.NoEditTriggers)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.box)
        layout.addWidget(self.list)
        self.box.textChanged.connect(self._filter)
        self.box.returnPressed.connect(self.choose)
        self.list.activated.connect(lambda _index: self.choose())

    def open_with(self, entries: list[str]) -> None:
        """Show the popup over the parent's centre, listing ``entries`` ("AAPL   Apple Inc.")."""
        self.names.setStringList(entries)
        self.box.clear()
        self._filter("")
        parent = self.parentWidget()
        if parent is not None:
            centre = parent.mapToGlobal(parent.rect().center())
            self.move(centre.x() - self.width() // 2, centre.y() - 200)
        self.show()
        self.box.setFocus()

    def _filter(self, text: str) -> None:
        # Symbols first: a match at the start of the entry is what the user typed.
        self.filtered.setFilterFixedString(text.strip())
        if self.filtered.rowCount():
            self.list.setCurrentIndex(self.filtered.index(0, 0))

    def matches(self) -> list[str]:
        return [str(self.filtered.index(r, 0).data()) for r in range(self.filtered.rowCount())]

    def choose(self) -> None:
        index = self.list.currentIndex()
        text = str(index.data()) if index.isValid() else self.box.text()
        symbol = text.split()[0].upper() if text.split() else ""
        self.hide()
        if symbol:
            self.symbol_chosen.emit(symbol)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Down, Qt.Key.Key_Up):
            # Arrows move through the list while typing continues in the box.
            self.list.keyPressEvent(event)
            return
        super().keyPressEvent(event)
