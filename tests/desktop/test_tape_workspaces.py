"""The tape's rows (tick rule, bound) and workspaces' saved form, without a window."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QSettings

from ticker_desktop.tape import TapeRows
from ticker_desktop.workspaces import Workspace, Workspaces


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.integers(95, 105), min_size=0, max_size=30), max_size=12),
    st.integers(1, 40),
)
def test_tape_keeps_the_newest_rows_newest_first_with_the_tick_rule(
    batches: list[list[int]], limit: int
) -> None:
    """Whatever the batches, the tape is the last ``limit`` trades reversed, each marked up or
    down by the last price change before it (a zero tick keeps the previous direction)."""
    tape = TapeRows(limit)
    everything: list[int] = []
    for batch in batches:
        n = len(batch)
        added = tape.extend([float(i) for i in range(len(everything), len(everything) + n)],
                            [float(p) for p in batch], [1] * n, [1] * n)  # fmt: skip
        assert added == min(n, limit)
        everything += batch
    directions, last, d = [], None, 0
    for p in everything:
        if last is not None and p != last:
            d = 1 if p > last else -1
        directions.append(d)
        last = p
    want = list(zip(everything, directions, strict=True))[::-1][:limit]
    assert [(int(r.price), r.direction) for r in tape.rows] == want


def test_tape_overflow_says_how_many_rows_drop_off() -> None:
    """A full tape of 5 taking 3 more drops 3; taking more than the limit drops everything held."""
    tape = TapeRows(5)
    tape.extend([1.0] * 4, [1.0] * 4, [1] * 4, [1] * 4)
    assert tape.overflow(3) == 2
    tape.extend([1.0], [1.0], [1], [1])
    assert tape.overflow(3) == 3
    assert tape.overflow(50) == 5


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.from_regex(r"[A-Z]{1,5}", fullmatch=True), max_size=6),
    st.sampled_from(["single", "grid"]),
    st.sampled_from(["line", "candles"]),
    st.sampled_from([1.0, 5.0, 60.0]),
    st.lists(st.sampled_from(["sma:20", "ema:9", "vwap", "bollinger", "rsi", "macd"]), unique=True),
    st.binary(max_size=64),
)
def test_a_workspace_round_trips_through_its_saved_form(
    symbols: list[str], view: str, mode: str, interval: float, keys: list[str], blob: bytes
) -> None:
    """Every field, Qt's saved states included, reads back as it was written."""
    ws = Workspace(
        symbols=symbols, view=view, selected=symbols[0] if symbols else None, mode=mode,
        interval=interval, indicators={"chart": keys, "grid": keys[:1]}, compare=symbols[1:],
        geometry=blob, splitter=blob[::-1], window_state=blob[:3],
    )  # fmt: skip
    assert Workspace.from_json(ws.to_json()) == ws


def test_workspaces_are_named_and_the_last_used_is_remembered(tmp_path: Path) -> None:
    """Saving two, loading one: names are listed, the last used is the one loaded, bad names
    and garbage entries are refused instead of breaking the start."""
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    spaces = Workspaces(settings)
    spaces.save("Morning", Workspace(symbols=["AAPL"], view="grid"))
    spaces.save("Close", Workspace(symbols=["MSFT"]))
    assert spaces.names() == ["Close", "Morning"]
    assert spaces.last() == "Close"
    spaces.mark_used("Morning")
    again = Workspaces(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert again.last() == "Morning"
    loaded = again.load("Morning")
    assert loaded is not None and loaded.view == "grid" and loaded.symbols == ["AAPL"]
    settings.setValue("workspaces/Broken", "{not json")
    assert again.load("Broken") is None
    for bad in ("", "a/b"):
        with pytest.raises(ValueError):
            spaces.save(bad, Workspace())
    spaces.delete("Morning")
    assert spaces.last() is None
