"""The watchlist model and view over a store fed by hand (no server needed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from ticker_desktop.store import MarketStore
from ticker_desktop.theme import DOWN, MUTED, UP
from ticker_desktop.watchlist import COLUMNS, SORT_ROLE, WatchlistModel, WatchlistView
from ticker_server.protocol import Tick


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def tick(symbol: str, seq: int, price: float, volume: int = 1000) -> Tick:
    return Tick(
        symbol=symbol, seq=seq, ts=1000.0 + seq, price=price, bid=price - 0.01,
        ask=price + 0.01, size=10, volume=volume,
    )  # fmt: skip


@pytest.fixture
def setup(qapp: QApplication) -> Iterator[tuple[MarketStore, WatchlistModel, FakeClock]]:
    clock = FakeClock()
    store = MarketStore(capacity=100, clock=clock)
    for symbol in ("AAPL", "MSFT", "TSLA"):
        store.add(symbol)
    store.ingest([tick("AAPL", 1, 200.0, 5000), tick("AAPL", 2, 202.0, 5100)])
    store.ingest([tick("MSFT", 1, 400.0, 900), tick("MSFT", 2, 396.0, 950)])
    store.ingest([tick("TSLA", 1, 250.0, 70_000)])
    model = WatchlistModel(store, clock)
    yield store, model, clock


def cell(model: WatchlistModel, symbol: str, column: str, role: int = 0) -> object:
    index = model.index(model.symbols.index(symbol), COLUMNS.index(column))
    return model.data(index, role or Qt.ItemDataRole.DisplayRole)


def test_rows_show_last_change_bid_ask_volume(
    setup: tuple[MarketStore, WatchlistModel, FakeClock],
) -> None:
    """Each row formats last, change since the session's first price, bid, ask and volume."""
    _, model, _ = setup
    assert cell(model, "AAPL", "Last") == "202.00"
    assert cell(model, "AAPL", "Chg") == "+2.00"
    assert cell(model, "AAPL", "Chg %") == "+1.00%"
    assert cell(model, "MSFT", "Chg %") == "-1.00%"
    assert (cell(model, "AAPL", "Bid"), cell(model, "AAPL", "Ask")) == ("201.99", "202.01")
    assert cell(model, "TSLA", "Volume") == "70,000"
    assert cell(model, "AAPL", "Chg", Qt.ItemDataRole.ForegroundRole) == UP
    assert cell(model, "MSFT", "Chg", Qt.ItemDataRole.ForegroundRole) == DOWN


def test_last_price_flashes_and_fades(setup: tuple[MarketStore, WatchlistModel, FakeClock]) -> None:
    """An up tick flashes the last cell green, a down tick red, and the flash fades out."""
    _, model, clock = setup
    up = cell(model, "AAPL", "Last", Qt.ItemDataRole.BackgroundRole)
    down = cell(model, "MSFT", "Last", Qt.ItemDataRole.BackgroundRole)
    assert isinstance(up, QColor) and up.green() > up.red()
    assert isinstance(down, QColor) and down.red() > down.green()
    clock.now += 0.2
    faded = cell(model, "AAPL", "Last", Qt.ItemDataRole.BackgroundRole)
    assert isinstance(faded, QColor) and faded.alpha() < up.alpha()
    clock.now += 1.0
    assert cell(model, "AAPL", "Last", Qt.ItemDataRole.BackgroundRole) is None


def test_stale_and_disconnected_rows_are_greyed(
    setup: tuple[MarketStore, WatchlistModel, FakeClock],
) -> None:
    """A symbol silent for too long is grey; while disconnected every row is."""
    _, model, clock = setup
    assert cell(model, "AAPL", "Last", Qt.ItemDataRole.ForegroundRole) != MUTED
    clock.now += 60.0
    assert cell(model, "AAPL", "Last", Qt.ItemDataRole.ForegroundRole) == MUTED
    assert "stale" in str(cell(model, "AAPL", "Symbol", Qt.ItemDataRole.ToolTipRole))
    clock.now -= 60.0
    model.set_connected(False)
    assert cell(model, "MSFT", "Last", Qt.ItemDataRole.ForegroundRole) == MUTED


def test_view_sorts_numerically(setup: tuple[MarketStore, WatchlistModel, FakeClock]) -> None:
    """Sorting by Last orders by the number, not the text ("70,000" after "950")."""
    _, model, _ = setup
    view = WatchlistView(model)
    view.sortByColumn(COLUMNS.index("Volume"), Qt.SortOrder.DescendingOrder)
    rows = [view.proxy.index(r, 0).data() for r in range(view.proxy.rowCount())]
    assert rows == ["TSLA", "AAPL", "MSFT"]
    assert view.proxy.index(0, COLUMNS.index("Volume")).data(SORT_ROLE) == 70_000.0


def test_delete_key_and_menu_ask_to_remove(
    setup: tuple[MarketStore, WatchlistModel, FakeClock],
) -> None:
    """Delete on a selected row, or the menu's Remove, emits remove_requested for it."""
    _, model, _ = setup
    view = WatchlistView(model)
    removed: list[list[str]] = []
    view.remove_requested.connect(removed.append)
    view.select_symbol("MSFT")
    QTest.keyClick(view, Qt.Key.Key_Delete)
    assert removed == [["MSFT"]]
    menu = view.context_menu(["TSLA"])
    remove = [a for a in menu.actions() if a.text().startswith("Remove")]
    remove[0].trigger()
    assert removed[-1] == ["TSLA"]


def test_rows_follow_the_symbol_set(setup: tuple[MarketStore, WatchlistModel, FakeClock]) -> None:
    """sync follows the watched set by inserting and removing rows, not by resetting the model."""
    store, model, _ = setup
    removed: list[int] = []
    inserted: list[int] = []
    reset: list[bool] = []
    model.rowsRemoved.connect(lambda _parent, first, _last: removed.append(first))
    model.rowsInserted.connect(lambda _parent, first, _last: inserted.append(first))
    model.modelReset.connect(lambda: reset.append(True))
    store.watched.remove(["MSFT"])
    store.watched.add(["NVDA"])
    assert model.symbols == ["AAPL", "MSFT", "TSLA"], "rows change only when synced"
    model.sync()
    assert model.symbols == ["AAPL", "TSLA", "NVDA"] and removed == [1] and inserted == [2]
    assert not reset
