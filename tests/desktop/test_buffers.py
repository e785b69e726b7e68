"""Pure tests of the tick ring buffer and candle aggregation."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_desktop.buffers import (
    CANDLE_INTERVALS,
    FIRST_ROOM,
    CandleSeries,
    Columns,
    TickBuffer,
    exact_intervals,
    suited_rate,
)
from ticker_server.protocol import RATES, Tick, ts_micros, window_micros


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
        i = cols.next_row()
        cols.raw("x")[i] = value
    assert list(cols.column("x")) == list(range(47, 57))
    assert cols.evicted == 47
    assert cols.column("x").flags["C_CONTIGUOUS"]


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_columns_start_small_and_stay_flat_once_full() -> None:
    """A Columns commits little at construction, its full room as it fills, then nothing more."""
    # 10 MB when full: large enough that RSS noise is small against it.
    capacity = 1_000_000
    # Heap pages an earlier test freed would be reused without growing RSS: hand them back.
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    before = rss_bytes()
    cols = Columns(capacity, {"x": np.int64})
    created = rss_bytes()
    assert cols.nbytes == FIRST_ROOM * 8
    assert created - before < 1_000_000
    room = capacity + capacity // 4
    value = 0
    while len(cols.raw("x")) < room:  # up to the last growth, which allocates the full room
        i = cols.next_row()
        cols.raw("x")[i] = value
        value += 1
    full = rss_bytes()
    assert full - before > 0.9 * cols.nbytes
    # A room more: the rows left are written first, then moved to the front and written again.
    for more in range(value, value + room):
        i = cols.next_row()
        cols.raw("x")[i] = more
    after = rss_bytes()
    assert cols.nbytes == room * 8
    assert after - full < 0.02 * cols.nbytes
    assert cols.column("x")[-1] == value + room - 1


@given(
    capacity=st.integers(1, 300),
    first=st.integers(1, 64),
    count=st.integers(0, 1000),
)
def test_growing_columns_hold_the_newest_rows(capacity: int, first: int, count: int) -> None:
    """However it starts, a Columns doubles up to its room, no further, and keeps the newest rows."""
    cols = Columns(capacity, {"x": np.int64, "y": np.float64}, first=first)
    for value in range(count):
        i = cols.next_row()
        cols.raw("x")[i] = value
        cols.raw("y")[i] = value / 2
    expected = list(range(max(0, count - capacity), count))
    assert list(cols.column("x")) == expected
    assert list(cols.column("y")) == [v / 2 for v in expected]
    assert cols.evicted == count - len(expected)
    rows = cols.nbytes // 16
    room = capacity + max(capacity // 4, 1)
    assert rows <= room
    assert rows >= min(room, first, max(count, 1))
    if count <= capacity:
        # Doubling: never more than twice what is held (or the first room).
        assert rows <= max(first, 2 * count)


@given(capacity=st.integers(1, 40), count=st.integers(0, 300))
def test_columns_hold_min_of_count_and_capacity(capacity: int, count: int) -> None:
    """For any capacity and append count the view is the last rows in order."""
    cols = Columns(capacity, {"x": np.int64})
    for value in range(count):
        i = cols.next_row()
        cols.raw("x")[i] = value
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


def test_merged_tick_opening_a_candle_opens_at_its_first_price() -> None:
    """A merged update that starts a candle opens it at its ``open``, not at a guess."""
    candles = CandleSeries(1.0)
    candles.add(10.5, 95.0, size=1)
    candles.add(11.5, 100.0, size=9, high=101.0, low=98.5, count=3, open=98.7)
    last = candles.last()
    assert (last["open"], last["high"], last["low"], last["close"]) == (98.7, 101.0, 98.5, 100.0)
    assert (last["volume"], last["count"]) == (9, 3)


def test_candle_buckets_follow_the_microsecond_grid() -> None:
    """A tick stamped on a boundary opens the next candle; one a microsecond before does not."""
    # In floating point 1_764_600_000.1 / 0.1 floors to the candle before.
    candles = CandleSeries(0.1)
    candles.add(1_764_600_000.099999, 10.0, size=1)
    candles.add(1_764_600_000.1, 11.0, size=1)
    assert len(candles) == 2
    assert candles.column("t")[1] == 1_764_600_000.1


def test_exact_intervals_are_multiples_of_the_window() -> None:
    """Only widths that are whole multiples of the granted window are offered."""
    assert exact_intervals(50.0) == CANDLE_INTERVALS
    assert exact_intervals(1.0) == (1.0, 5.0, 60.0)
    assert exact_intervals(0.5) == (60.0,)
    assert exact_intervals(1 / 5) == (5.0, 60.0)
    assert exact_intervals(1 / 15) == (60.0,)
    assert exact_intervals(0.0) == CANDLE_INTERVALS
    assert exact_intervals(None) == CANDLE_INTERVALS


def test_suited_rate_is_the_fastest_whose_window_divides_a_width() -> None:
    """The dashboard asks for the fastest offered rate, not above its own, that keeps the most widths exact."""
    rates = list(RATES)
    assert suited_rate(rates, 60.0) == 50.0
    assert suited_rate(rates, None) == 50.0
    assert suited_rate(rates, 1.0) == 1.0
    assert suited_rate(rates, 3.0) == 2.0
    # Nothing up to 1/2 divides 1 s, 2 s and 4 s do not divide 5 s: 1/5 keeps 5 s and 1 min.
    assert suited_rate(rates, 0.5) == 0.2
    assert suited_rate([0.5, 0.25], 60.0) == 0.5
    assert suited_rate([], 60.0) == 60.0


PRICES = st.floats(1.0, 1000.0, allow_nan=False)
BASE_US = 1_764_600_000 * 1_000_000


def conflate(ticks: list[Tick], window: int, cuts: list[bool]) -> list[Tick]:
    """A reference conflater of the server contract: each window's ticks in consecutive runs.

    ``cuts[i]`` ends a run after tick ``i`` (a window's end always does); a run of one is
    the plain tick, a longer one an update with the last tick's fields, the first's price
    as ``open``, high, low, summed size and the count as ``merged``.
    """
    out: list[Tick] = []
    run: list[Tick] = []
    for i, t in enumerate(ticks):
        run.append(t)
        last = i == len(ticks) - 1
        if last or cuts[i] or ts_micros(ticks[i + 1].ts) // window != ts_micros(t.ts) // window:
            end = run[-1]
            if len(run) == 1:
                out.append(end)
            else:
                prices = [r.price for r in run]
                out.append(
                    end.model_copy(
                        update={
                            "size": sum(r.size for r in run),
                            "merged": len(run),
                            "open": run[0].price,
                            "high": max(prices),
                            "low": min(prices),
                        }
                    )
                )
            run = []
    return out


@settings(max_examples=150)
@given(
    data=st.data(),
    rate=st.sampled_from(RATES),
    multiple=st.integers(1, 4),
)
def test_candles_of_conflated_updates_equal_those_of_every_tick(
    data: st.DataObject, rate: float, multiple: int
) -> None:
    """For a width that is a multiple of the window, conflated updates build exactly the full feed's candles."""
    window = window_micros(rate)
    # Gaps of up to three windows, many of them zero or tiny, so runs, boundaries and empty windows occur.
    gaps = data.draw(
        st.lists(st.one_of(st.integers(0, 3), st.integers(0, 3 * window)), min_size=1, max_size=120)
    )
    ts_us = BASE_US + data.draw(st.integers(0, 120_000_000))
    ticks: list[Tick] = []
    for seq, gap in enumerate(gaps, start=1):
        ts_us += gap
        price = data.draw(PRICES)
        ticks.append(tick(seq, ts_us / 1_000_000, price, size=data.draw(st.integers(0, 500))))
    cuts = data.draw(st.lists(st.booleans(), min_size=len(ticks), max_size=len(ticks)))
    width = multiple * window / 1_000_000
    full, conflated = CandleSeries(width), CandleSeries(width)
    for t in ticks:
        full.add_tick(t)
    for t in conflate(ticks, window, cuts):
        conflated.add_tick(t)
    for name in ("t", "open", "high", "low", "close", "volume", "count"):
        assert np.array_equal(full.column(name), conflated.column(name)), name
    assert full.column("count").sum() == len(ticks)
