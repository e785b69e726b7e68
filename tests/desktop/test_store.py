"""Pure tests of the market store, the rate meter, the backoff and the sequence guard."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_desktop.client import SequenceGuard
from ticker_desktop.store import MarketStore, RateMeter
from ticker_server.protocol import Tick


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tick(
    symbol: str, seq: int, price: float, ts: float | None = None, **extra: float | int
) -> Tick:
    return Tick(
        symbol=symbol,
        seq=seq,
        ts=ts if ts is not None else 1000.0 + seq,
        price=price,
        bid=price - 0.01,
        ask=price + 0.01,
        size=10,
        volume=10 * seq,
        **extra,
    )


def test_store_tracks_change_direction_and_dirty_symbols() -> None:
    """Change is measured from the session's first price and only changed symbols are dirty."""
    store = MarketStore(capacity=100, clock=FakeClock())
    store.add("AAPL")
    store.add("MSFT")
    store.take_dirty()
    assert store.ingest([tick("AAPL", 1, 100.0), tick("AAPL", 2, 102.0)]) == 2
    series = store.get("AAPL")
    assert series is not None
    assert series.change == 2.0 and series.change_pct == 2.0 and series.direction == 1
    assert store.take_dirty() == {"AAPL"}
    assert store.take_dirty() == set()


def test_store_drops_duplicates_and_ignores_unheld_symbols() -> None:
    """Repeats are counted as dropped; ticks of symbols not held are ignored."""
    store = MarketStore(capacity=100, clock=FakeClock())
    store.add("AAPL")
    store.ingest([tick("AAPL", 1, 100.0), tick("AAPL", 2, 101.0)])
    assert store.ingest([tick("AAPL", 2, 101.0), tick("TSLA", 1, 5.0)]) == 0
    assert store.dropped == 1
    assert "TSLA" not in store


def test_store_counts_conflated_and_missed_ticks() -> None:
    """Merged ticks add merged-1 to the conflated count; seq holes not covered count as missed."""
    store = MarketStore(capacity=100, clock=FakeClock())
    store.add("AAPL")
    store.ingest([tick("AAPL", 1, 100.0)])
    store.ingest([tick("AAPL", 5, 101.0, merged=4, high=101.5, low=99.5)])
    store.ingest([tick("AAPL", 9, 101.0)])
    series = store.get("AAPL")
    assert series is not None
    assert store.conflated == 3
    assert series.missed == 3
    candle = series.candles[60.0].last()
    assert candle["count"] == 6 and candle["high"] == 101.5 and candle["low"] == 99.5


def test_store_marks_symbols_stale_after_silence() -> None:
    """A symbol that stops ticking turns stale after several of its usual intervals."""
    clock = FakeClock()
    store = MarketStore(capacity=100, clock=clock)
    store.add("AAPL")
    for seq in range(1, 20):
        clock.now += 0.2
        store.ingest([tick("AAPL", seq, 100.0)])
    assert not store.is_stale("AAPL")
    clock.now += 2.0
    assert not store.is_stale("AAPL")
    clock.now += 2.0
    assert store.is_stale("AAPL")


def test_store_records_outage_as_gap_and_new_epoch_rebases() -> None:
    """A lost-then-restored connection adds a gap; a new epoch lets restarted seqs in."""
    store = MarketStore(capacity=100, clock=FakeClock())
    store.add("AAPL")
    store.ingest([tick("AAPL", 50, 100.0)])
    store.connection_lost(2000.0)
    store.connection_restored(2003.0)
    series = store.get("AAPL")
    assert series is not None and [(g.start, g.end) for g in series.gaps] == [(2000.0, 2003.0)]
    assert store.ingest([tick("AAPL", 1, 100.0, ts=2004.0)]) == 0
    store.new_epoch()
    assert store.ingest([tick("AAPL", 1, 100.0, ts=2004.0)]) == 1
    assert series.missed == 0


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_two_hundred_symbols_with_snapshots_fit_in_well_under_a_gigabyte() -> None:
    """200 symbols with a 1,000-tick snapshot each hold about 50 MB, not the 2.8 GB of full buffers."""
    store = MarketStore(clock=FakeClock())
    before = rss_bytes()
    for n in range(200):
        symbol = f"S{n}"
        store.add(symbol)
        store.ingest((tick(symbol, seq, 100.0 + seq % 9) for seq in range(1, 1001)), live=False)
    grew = rss_bytes() - before
    held = 0
    for symbol in store.symbols:
        series = store.get(symbol)
        assert series is not None and len(series.ticks) == 1000
        held += series.ticks.nbytes + sum(c.nbytes for c in series.candles.values())
    assert held < 60_000_000
    assert grew < 120_000_000


def test_rate_meter_measures_events_per_second() -> None:
    """Events spread over the window give their rate; old ones fall out."""
    meter = RateMeter(window=2.0, buckets=8)
    for i in range(40):
        meter.add(10.0 + i * 0.05)
    assert 15.0 <= meter.rate(12.0) <= 20.0
    assert meter.rate(20.0) == 0.0


def test_sequence_guard_since_and_reset() -> None:
    """The guard refuses repeats, reports since per symbol, and forgets on reset."""
    guard = SequenceGuard()
    assert guard.accept("AAPL", 5)
    assert not guard.accept("AAPL", 5)
    assert guard.accept("MSFT", 2)
    assert guard.since(["AAPL", "MSFT", "TSLA"]) == {"AAPL": 5, "MSFT": 2}
    guard.forget("MSFT")
    assert guard.since(["MSFT"]) == {}
    guard.reset()
    assert guard.accept("AAPL", 1)


@settings(max_examples=80)
@given(
    seqs=st.lists(st.integers(1, 60), min_size=1, max_size=120),
    merged_every=st.integers(2, 9),
)
def test_store_keeps_every_newer_tick_once_in_order(seqs: list[int], merged_every: int) -> None:
    """Whatever order and repeats arrive in, the buffer holds each accepted seq once, ascending."""
    store = MarketStore(capacity=1000, clock=FakeClock())
    store.add("AAPL")
    accepted = []
    for n, seq in enumerate(seqs):
        extra = {"merged": 2, "high": 101.0, "low": 99.0} if n % merged_every == 0 else {}
        if store.ingest([tick("AAPL", seq, 100.0, **extra)]):
            accepted.append(seq)
    series = store.get("AAPL")
    assert series is not None
    held = list(series.ticks.column("seq"))
    assert held == accepted == sorted(set(accepted))
    assert store.accepted + store.dropped == len(seqs)
    counts = series.candles[60.0].column("count")
    assert int(counts.sum()) == sum(2 if (i % merged_every == 0) else 1 for i in _kept(seqs))


def _kept(seqs: list[int]) -> list[int]:
    """Indexes of the ticks a store accepts: each one newer than every one before it."""
    kept, best = [], 0
    for i, seq in enumerate(seqs):
        if seq > best:
            kept.append(i)
            best = seq
    return kept
