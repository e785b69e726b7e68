"""The one watched set: an ordered set that tells its readers of every change (no Qt)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ticker_desktop.export import TICK_COLUMNS, export_ticks_csv
from ticker_desktop.store import MarketStore
from ticker_desktop.watched import WatchChange, WatchedSymbols
from ticker_server.protocol import Tick

NAMES = st.sampled_from(["AAPL", "msft", " NVDA ", "TSLA", "", "aapl"])
EDITS = st.lists(st.tuples(st.booleans(), st.lists(NAMES, max_size=4)), max_size=30)


@given(EDITS)
def test_edits_match_an_ordered_set_and_each_change_says_what_changed(
    edits: list[tuple[bool, list[str]]],
) -> None:
    """After any edits the set equals a reference ordered set; listeners see exact deltas."""
    watched = WatchedSymbols()
    seen: list[WatchChange] = []
    watched.add_listener(seen.append)
    reference: list[str] = []
    effective = 0
    for adding, names in edits:
        before = list(reference)
        clean = [n.strip().upper() for n in names if n.strip()]
        if adding:
            reference += [n for n in dict.fromkeys(clean) if n not in reference]
            changed = watched.add(names)
        else:
            reference = [n for n in reference if n not in clean]
            changed = watched.remove(names)
        assert watched.symbols == reference
        if reference == before:
            assert changed == []
        else:
            effective += 1
            change = seen[-1]
            assert change.symbols == tuple(reference)
            assert list(change.added if adding else change.removed) == changed
    assert len(seen) == effective, "one notification per edit that changed the set, no other"


def test_store_holds_a_series_for_exactly_the_watched_symbols() -> None:
    """The store follows the shared set: a symbol added anywhere gets a series, one removed loses it."""
    watched = WatchedSymbols(["AAPL"])
    store = MarketStore(capacity=10, watched=watched)
    assert store.symbols == ["AAPL"] and "AAPL" in store
    watched.add(["msft"])
    store.remove("AAPL")
    assert store.symbols == watched.symbols == ["MSFT"]
    assert store.get("AAPL") is None and store.get("MSFT") is not None
    assert store.add("nvda") is store.get("NVDA") and watched.symbols == ["MSFT", "NVDA"]


def test_ticks_export_as_csv_without_a_window(tmp_path: Path) -> None:
    """export_ticks_csv writes a header and one row per held tick, oldest first."""
    store = MarketStore(capacity=10, watched=WatchedSymbols(["AAPL"]))
    store.ingest(
        Tick(symbol="AAPL", seq=seq, ts=1000.0 + seq, price=100.0 + seq, bid=99.0, ask=200.0,
             size=1, volume=seq)
        for seq in (1, 2, 3)
    )  # fmt: skip
    series = store.get("AAPL")
    assert series is not None
    path = tmp_path / "aapl.csv"
    assert export_ticks_csv(series, path) == 3
    header, *rows = [line.split(",") for line in path.read_text().splitlines()]
    assert header == ["symbol", "time", *TICK_COLUMNS]
    assert [(r[0], r[2], r[4]) for r in rows] == [
        ("AAPL", str(s), f"{100.0 + s}") for s in (1, 2, 3)
    ]
