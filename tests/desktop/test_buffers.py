"""Pure tests of the tick ring buffer and candle aggregation."""

from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_desktop.buffers import CandleSeries, Columns, TickBuffer
from ticker_server.protocol import Tick


def tick(seq: int, ts: float, price: float, size: int = 10, **extra: float | int) -> Tick:
    return Tick(
        symbol="AAPL",
        seq=seq,
        ts=ts,
        price=price,
        bid=price - 0.01,
        ask=price + 0.01,
        size=size,
        volume=seq * size,
        **extra,
    )


def test_columns_keep_the_newest_rows_contiguous() -> None:
    """Past capacity the oldest rows go, the view stays ordered and evictions are counted."""
    cols = Columns(10, {"x": np.int64})
    for value in range(57):
        cols.raw("x")[cols.next_row()] = value
    assert list(cols.column("x")) == list(range(47, 57))
    assert cols.evicted == 47
    assert cols.column("x").flags["C_CONTIGUOUS"]


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_columns_commit_their_memory_at_construction() -> None:
    """RSS is taken when a Columns is created and does not grow as its rows are first written."""
    # 40 MB is above glibc's largest mmap threshold (32 MB), so these are fresh pages, never
    # resident memory freed by an earlier test.
    capacity = 4_000_000
    before = rss_bytes()
    cols = Columns(capacity, {"x": np.int64})
    created = rss_bytes()
    # Appending until the room is used up writes each row once; writing it all at once is faster.
    backing = cols.raw("x")
    backing[:] = np.arange(len(backing))
    filled = rss_bytes()
    allocated = backing.nbytes
    assert allocated >= capacity * 8
    assert created - before > 0.9 * allocated
    assert filled - created < 0.02 * allocated


@given(capacity=st.integers(1, 40), count=st.integers(0, 300))
def test_columns_hold_min_of_count_and_capacity(capacity: int, count: int) -> None:
    """For any capacity and append count the view is the last rows in order."""
    cols = Columns(capacity, {"x": np.int64})
    for value in range(count):
        cols.raw("x")[cols.next_row()] = value
    expected = list(range(max(0, count - capacity), count))
    assert list(cols.column("x")) == expected
    assert cols.evicted == count - len(expected)


def test_tick_buffer_drops_ticks_that_are_not_newer() -> None:
    """A repeated or older seq is refused; the buffer stays strictly increasing."""
    buf = TickBuffer(100)
    assert buf.append(tick(1, 1.0, 10.0))
    assert buf.append(tick(3, 2.0, 10.5))
    assert not buf.append(tick(3, 2.0, 10.5))
    assert not buf.append(tick(2, 1.5, 10.2))
    assert list(buf.column("seq")) == [1, 3]
    assert buf.last_seq == 3


def test_tick_buffer_rebase_lets_a_new_epoch_in() -> None:
    """After a feed restart (rebase) seqs from 1 are accepted again and data is kept."""
    buf = TickBuffer(100)
    buf.append(tick(500, 1.0, 10.0))
    assert not buf.append(tick(1, 5.0, 11.0))
    buf.rebase()
    assert buf.append(tick(1, 5.0, 11.0))
    assert list(buf.price) == [10.0, 11.0]


def test_tick_buffer_is_bounded() -> None:
    """A full buffer keeps exactly its capacity of newest ticks."""
    buf = TickBuffer(1000)
    for seq in range(1, 5001):
        buf.append(tick(seq, float(seq), 100.0 + seq % 7))
    assert len(buf) == 1000
    assert buf.column("seq")[0] == 4001
    assert np.all(np.diff(buf.ts) > 0)


def test_tick_buffer_stores_merged_fields() -> None:
    """A conflated tick keeps merged, high and low; a plain one has merged 1 and high=low=price."""
    buf = TickBuffer(10)
    buf.append(tick(1, 1.0, 10.0))
    buf.append(tick(5, 2.0, 10.4, size=40, merged=4, high=10.9, low=9.8))
    cols = buf.columns()
    assert list(cols["merged"]) == [1, 4]
    assert list(cols["high"]) == [10.0, 10.9]
    assert list(cols["low"]) == [10.0, 9.8]


def test_candles_aggregate_by_interval() -> None:
    """Ticks in one bucket update the newest candle in place; a new bucket opens a candle."""
    candles = CandleSeries(5.0)
    for ts, price in [(100.1, 10.0), (101.0, 12.0), (104.9, 9.0), (105.0, 11.0)]:
        candles.add(ts, price, size=1)
    assert list(candles.column("t")) == [100.0, 105.0]
    assert list(candles.column("open")) == [10.0, 11.0]
    assert list(candles.column("high")) == [12.0, 11.0]
    assert list(candles.column("low")) == [9.0, 11.0]
    assert list(candles.column("close")) == [9.0, 11.0]
    assert list(candles.column("volume")) == [3, 1]


def test_merged_tick_keeps_high_low_volume_and_count() -> None:
    """A conflated tick contributes its high, low, summed size and covered count."""
    candles = CandleSeries(1.0)
    candles.add(10.2, 100.0, size=5)
    candles.add(10.5, 100.5, size=30, high=102.0, low=98.0, count=6)
    last = candles.last()
    assert (last["open"], last["high"], last["low"], last["close"]) == (100.0, 102.0, 98.0, 100.5)
    assert last["volume"] == 35
    assert last["count"] == 7


def test_merged_tick_opening_a_candle_opens_at_previous_close_clamped() -> None:
    """The first merged price is unknown, so the previous close clamped into the range opens."""
    candles = CandleSeries(1.0)
    candles.add(10.5, 95.0, size=1)
    candles.add(11.5, 100.0, size=9, high=101.0, low=99.0, count=3)
    last = candles.last()
    assert last["open"] == 99.0
    assert last["low"] == 99.0 and last["high"] == 101.0


prices = st.floats(1.0, 1000.0, allow_nan=False)


@settings(max_examples=60)
@given(
    steps=st.lists(
        st.tuples(st.floats(0.0, 3.0), prices, st.integers(0, 500)), min_size=1, max_size=200
    ),
    group=st.integers(1, 7),
)
def test_conflated_candles_match_unconflated_ones(
    steps: list[tuple[float, float, int]], group: int
) -> None:
    """Candles from server-style merged ticks equal those from every tick in high, low, close, volume, count."""
    full, conflated = CandleSeries(1.0), CandleSeries(1.0)
    ts = 1000.0
    ticks: list[tuple[float, float, int]] = []
    for dt, price, size in steps:
        ts += dt
        ticks.append((ts, price, size))
    for t, p, s in ticks:
        full.add(t, p, s)
    # Merge runs of ticks that fall in one bucket, as a conflating server would within a frame.
    i = 0
    while i < len(ticks):
        run = [ticks[i]]
        while (
            len(run) < group
            and i + len(run) < len(ticks)
            and math.floor(ticks[i + len(run)][0]) == math.floor(ticks[i][0])
        ):
            run.append(ticks[i + len(run)])
        t, p, _ = run[-1]
        size = sum(r[2] for r in run)
        if len(run) == 1:
            conflated.add(t, p, size)
        else:
            ps = [r[1] for r in run]
            conflated.add(t, p, size, high=max(ps), low=min(ps), count=len(run))
        i += len(run)
    for name in ("t", "high", "low", "close", "volume", "count"):
        assert np.array_equal(full.column(name), conflated.column(name)), name
    opens, lows, highs = conflated.column("open"), conflated.column("low"), conflated.column("high")
    assert np.all((lows <= opens) & (opens <= highs))
