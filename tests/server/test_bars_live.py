"""Live bar messages (pure): every closed bar once and exact, partials within the granted rate."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_server.bars import BarStore
from ticker_server.live_bars import LiveBars
from ticker_server.protocol import Tick


def tick(seq: int, ts: float, cents: int, symbol: str = "AAPL") -> Tick:
    return Tick(symbol=symbol, seq=seq, ts=ts, price=cents / 100, bid=0.01, ask=0.02,
                size=100, volume=100 * seq)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 1_500_000), st.integers(100, 200)), min_size=1, max_size=200),
    st.lists(st.integers(1, 20), min_size=1, max_size=200),
    st.sampled_from([0.0, 1.0, 2.0, 10.0]),
)
def test_each_closed_bar_once_and_exact_partials_within_the_rate(
    steps: list[tuple[int, int]], sizes: list[int], rate: float
) -> None:
    """Whatever the batches: finals equal the store's closed bars, in order, once each; a
    client gets at most one partial per key per window of its rate."""
    live: LiveBars[str] = LiveBars(BarStore(["AAPL"]))
    live.subscribe("c", ["AAPL"], [1, 5], rate)
    ticks, t_us = [], 1_000_000_000_000
    for seq, (gap, cents) in enumerate(steps, 1):
        t_us += gap
        ticks.append(tick(seq, t_us / 1e6, cents))
    sent: list[dict[str, Any]] = []
    at = 0
    for size in sizes * (len(ticks) // len(sizes) + 1):
        batch = ticks[at : at + size]
        if not batch:
            break
        at += size
        for client, frame in live.on_ticks(batch, batch[-1].ts):
            assert client == "c"
            sent.append({**json.loads(frame), "at": batch[-1].ts})
    for interval in (1, 5):
        series = live.store.series["AAPL"][interval]
        finals = [m["bar"] for m in sent if m["interval"] == interval and not m["partial"]]
        closed = [
            {"t": t, "o": o / 100, "h": h / 100, "l": low / 100, "c": c / 100, "v": v, "n": n}
            for t, o, h, low, c, v, n in series.closed.tolist()
        ]
        assert finals == closed
        partial_at = [m["at"] for m in sent if m["interval"] == interval and m["partial"]]
        if rate:
            assert all(b - a >= 1 / rate - 1e-9 for a, b in pairwise(partial_at))


def test_resubscribing_replaces_the_intervals_and_remove_forgets() -> None:
    """bars [5] after [1] stops 1 s bars for that symbol; remove() stops everything."""
    live: LiveBars[str] = LiveBars(BarStore(["AAPL", "MSFT"]))
    live.subscribe("c", ["AAPL", "MSFT"], [1], 0.0)
    live.subscribe("c", ["AAPL"], [5], 0.0)
    frames = live.on_ticks([tick(1, 100.0, 150), tick(1, 100.0, 150, "MSFT")], 100.0)
    assert sorted((json.loads(f)["symbol"], json.loads(f)["interval"]) for _, f in frames) == [
        ("AAPL", 5),
        ("MSFT", 1),
    ]
    live.remove("c")
    assert live.on_ticks([tick(2, 101.0, 151)], 101.0) == [] and live.watches == {}
