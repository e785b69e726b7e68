"""The pure bar store: bars equal a straightforward aggregation of every tick, however fed."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_server.bars import BarStore
from ticker_server.protocol import BAR_INTERVALS, Tick, ts_micros

SYMBOLS = ("AAPL", "MSFT")
T0 = 1_764_000_000.0

Row = tuple[int, int, int, int, int, int, int]


def reference(ticks: Sequence[Tick], symbol: str, interval: int) -> list[Row]:
    """Bars the obvious way: a dict of lists keyed by bar start, one tick at a time."""
    bars: dict[int, list[int]] = {}
    for tick in ticks:
        if tick.symbol != symbol:
            continue
        t = ts_micros(tick.ts) // (interval * 1_000_000) * interval
        cents = round(tick.price * 100)
        bar = bars.get(t)
        if bar is None:
            bars[t] = [t, cents, cents, cents, cents, tick.size, 1]
        else:
            bar[2], bar[3] = max(bar[2], cents), min(bar[3], cents)
            bar[4], bar[5], bar[6] = cents, bar[5] + tick.size, bar[6] + 1
    return [tuple(bar) for _, bar in sorted(bars.items())]  # type: ignore[misc]


def held(store: BarStore, symbol: str, interval: int) -> list[Row]:
    series = store.series[symbol][interval]
    rows: list[Row] = [tuple(r) for r in series.closed.tolist()]
    if series.forming is not None:
        rows.append(tuple(series.forming))  # type: ignore[arg-type]
    return rows


@st.composite
def tick_feeds(draw: st.DrawFn) -> list[Tick]:
    """Ticks of two symbols with gaps from a microsecond to two hours, in seq order."""
    count = draw(st.integers(0, 300))
    gaps = draw(
        st.lists(
            st.one_of(st.integers(0, 400_000), st.integers(0, 7_200_000_000)),
            min_size=count,
            max_size=count,
        )
    )
    ticks: list[Tick] = []
    seqs = dict.fromkeys(SYMBOLS, 0)
    t_us = int(T0 * 1_000_000) + draw(st.integers(0, 3_600_000_000))
    for gap in gaps:
        t_us += gap
        symbol = draw(st.sampled_from(SYMBOLS))
        seqs[symbol] += 1
        price = draw(st.integers(1, 2_000_000)) / 100
        ticks.append(
            Tick(
                symbol=symbol,
                seq=seqs[symbol],
                ts=t_us / 1_000_000,
                price=price,
                bid=price,
                ask=price,
                size=draw(st.integers(1, 25_000)),
                volume=0,
            )
        )
    return ticks


def split(ticks: list[Tick], cuts: list[int]) -> list[list[Tick]]:
    edges = sorted({min(c, len(ticks)) for c in cuts} | {0, len(ticks)})
    return [ticks[a:b] for a, b in pairwise(edges)]


@settings(max_examples=60, deadline=None)
@given(
    tick_feeds(),
    st.lists(st.integers(0, 300), max_size=12),
    st.integers(0, 300),
)
def test_bars_equal_reference_whatever_the_batches(
    ticks: list[Tick], cuts: list[int], backfilled: int
) -> None:
    """A prefix as arrays (the backfill), then batches of any size: every bar is exact."""
    store = BarStore(SYMBOLS, retention=10 * 86_400.0)
    head, rest = ticks[:backfilled], ticks[backfilled:]
    for symbol in SYMBOLS:
        mine = [t for t in head if t.symbol == symbol]
        if mine:
            store.ingest_arrays(
                symbol,
                mine[-1].seq,
                np.array([ts_micros(t.ts) for t in mine], dtype=np.int64),
                np.array([round(t.price * 100) for t in mine], dtype=np.int64),
                np.array([t.size for t in mine], dtype=np.int64),
            )
    for batch in split(rest, cuts):
        store.ingest(batch)
    store.ingest(ticks[: len(ticks) // 2])  # replayed ticks are taken once only
    for symbol in SYMBOLS:
        for interval in BAR_INTERVALS:
            assert held(store, symbol, interval) == reference(ticks, symbol, interval)


@settings(max_examples=40, deadline=None)
@given(tick_feeds(), st.lists(st.integers(0, 300), max_size=12), st.integers(1, 40))
def test_retention_keeps_the_newest_closed_bars(
    ticks: list[Tick], cuts: list[int], kept: int
) -> None:
    """With room for ``kept`` closed bars, the ring holds exactly the newest ``kept``."""
    store = BarStore(SYMBOLS, retention={i: kept * i for i in BAR_INTERVALS})
    for batch in split(ticks, cuts):
        store.ingest(batch)
    for symbol in SYMBOLS:
        for interval in BAR_INTERVALS:
            expected = reference(ticks, symbol, interval)
            closed, forming = expected[:-1], expected[-1:]
            assert held(store, symbol, interval) == closed[-kept:] + forming
            assert store.series[symbol][interval].closed_total == len(closed)


def test_a_session_of_bars_for_twenty_symbols_fits_in_50_mb() -> None:
    """The default retention (a 6.5 h session at every interval) for 20 symbols is < 50 MB."""
    store = BarStore([f"S{i}" for i in range(20)])
    assert store.capacity[1] == 23_400
    assert store.nbytes < 50 * 1024 * 1024
