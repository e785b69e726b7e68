"""The vectorised ingest stores exactly what folding the same ticks one by one stores."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_desktop.buffers import CANDLE_COLUMNS, TICK_COLUMNS
from ticker_desktop.store import BATCH_MIN, MarketStore
from ticker_server.protocol import Tick


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@st.composite
def frames(draw: st.DrawFn) -> list[list[Tick]]:
    """Frames of ticks of two symbols: seqs mostly rising with duplicates and resends, ts
    stepping forward (sometimes back), some ticks merged with a high, low and open."""
    out: list[list[Tick]] = []
    seqs = {"A": 0, "B": 0}
    ts = 1_000_000.0
    for _ in range(draw(st.integers(1, 6))):
        frame: list[Tick] = []
        for _ in range(draw(st.integers(0, 3 * BATCH_MIN))):
            symbol = draw(st.sampled_from(["A", "B", "C"]))
            step = draw(st.sampled_from([1, 1, 1, 3, 0, -2]))
            seq = max(1, seqs.get(symbol, 0) + step)
            seqs[symbol] = max(seqs.get(symbol, 0), seq)
            ts = round(ts + draw(st.sampled_from([0.0, 0.25, 0.7, 3.0, -0.5])), 6)
            price = draw(st.floats(90.0, 110.0)).__round__(2)
            merged = draw(st.sampled_from([None, None, 2, 5]))
            extra = {}
            if merged:
                extra = {
                    "merged": merged,
                    "high": price + 0.5,
                    "low": price - 0.75,
                    "open": price + 0.1,
                }
            frame.append(
                Tick(symbol=symbol, seq=seq, ts=ts, price=price, bid=price - 0.01,
                     ask=price + 0.01, size=draw(st.integers(0, 500)), volume=seq * 10, **extra)
            )  # fmt: skip
        out.append(frame)
    return out


def one_by_one(store: MarketStore, ticks: list[Tick], live: bool) -> int:
    return sum(store.ingest([t], live) for t in ticks)


@settings(max_examples=150, deadline=None)
@given(frames(), st.booleans(), st.integers(3, 40))
def test_batched_ingest_equals_one_by_one(frames: list[list[Tick]], live: bool, cap: int) -> None:
    """Ticks, candles of every width, gaps and counters match per-tick folding, with eviction."""
    clock_a, clock_b = Clock(), Clock()
    batched = MarketStore(capacity=cap, candle_capacity=cap, clock=clock_a)
    single = MarketStore(capacity=cap, candle_capacity=cap, clock=clock_b)
    for store in (batched, single):
        store.add("A")
        store.add("B")
    for frame in frames:
        clock_a.now += 0.3
        clock_b.now += 0.3
        assert batched.ingest(frame, live) == one_by_one(single, frame, live)
    for name in ("accepted", "dropped", "conflated", "newest_ts"):
        assert getattr(batched, name) == getattr(single, name), name
    for symbol in ("A", "B"):
        a, b = batched.get(symbol), single.get(symbol)
        assert a is not None and b is not None
        for column in TICK_COLUMNS:
            np.testing.assert_array_equal(a.ticks.column(column), b.ticks.column(column))
        for width, candles in a.candles.items():
            for column in CANDLE_COLUMNS:
                np.testing.assert_array_equal(
                    candles.column(column), b.candles[width].column(column), err_msg=column
                )
        assert a.ticks.last_seq == b.ticks.last_seq
        assert (a.last, a.first_price, a.direction, a.missed) == (
            b.last,
            b.first_price,
            b.direction,
            b.missed,
        )
        assert a.changed_at == b.changed_at
        assert a.interval == b.interval or abs((a.interval or 0) - (b.interval or 0)) < 1e-12
        assert a.version >= 1 or b.version == a.version
