"""What a gateway accepts from the bus (pure: no Redis here; tests/redis runs it for real)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticker_server.bus_guard import LOG_PERIOD, MAX_SEQ, BusGuard
from ticker_server.protocol import Tick, encode_tick

KEEP = 100


def tick(seq: int, symbol: str = "AAPL", price: float = 100.0, ts: float = 1.0) -> Tick:
    return Tick(
        symbol=symbol, seq=seq, ts=ts, price=price, bid=price, ask=price, size=1, volume=seq
    )


def guard(clock: list[float] | None = None) -> BusGuard:
    now = clock if clock is not None else [0.0]
    g = BusGuard(KEEP, logging.getLogger("test.bus_guard"), clock=lambda: now[0])
    g.reset(["AAPL", "MSFT"])
    return g


FORGED = st.one_of(
    st.integers(KEEP + 1, 2**62).map(lambda jump: ("jump", jump)),
    st.sampled_from(["NOPE", "aapl", "A" * 30]).map(lambda symbol: ("symbol", symbol)),
    st.sampled_from([float("inf"), float("nan")]).map(lambda value: ("ts", value)),
    st.just(("seq", MAX_SEQ + 1)),
)


def forge(kind: str, value: object, last: int) -> Tick:
    if kind == "jump":
        return tick(last + int(value))  # type: ignore[call-overload]
    if kind == "symbol":
        return tick(last + 1, symbol=str(value))
    if kind == "ts":
        return tick(last + 1, ts=float(value))  # type: ignore[arg-type]
    return tick(int(value))  # type: ignore[call-overload]


@given(
    start=st.integers(0, 10**6),
    length=st.integers(1, 60),
    at=st.integers(0, 60),
    forged=FORGED,
    seen_before=st.booleans(),
)
def test_one_forged_tick_is_rejected_and_the_symbol_goes_on(
    start: int, length: int, at: int, forged: tuple[str, object], seen_before: bool
) -> None:
    """Whatever one bad tick carries and wherever it lands in a live run, exactly the real ticks pass."""
    g = guard()
    if seen_before or start == 0:
        g.seen["AAPL"] = start
    else:
        g.anchor("AAPL", [tick(start)])
        g.seen["AAPL"] = start
    real = [tick(start + 1 + i) for i in range(length)]
    at = min(at, length)
    bad = forge(*forged, last=start + at)
    admitted = g.admit([*real[:at], bad, *real[at:]])
    assert admitted == real
    assert sum(g.rejected.values()) == 1


@given(
    base=st.integers(0, 10**9),
    length=st.integers(3, 80),
    forged=st.lists(st.tuples(st.integers(0, 80), FORGED), max_size=3),
)
def test_history_with_a_few_forged_entries_anchors_on_the_real_ones(
    base: int, length: int, forged: list[tuple[int, tuple[str, object]]]
) -> None:
    """A new gateway's history (oldest first) with a few scattered forged entries yields the real run.

    Scattered: two forged entries in a row that agree with each other pass as a real jump.
    """
    g = guard()
    real = [tick(base + 1 + i) for i in range(length)]
    entries = list(real)
    at = {min(position, length): kind for position, kind in forged}
    for position, (kind, value) in sorted(at.items(), reverse=True)[: (length - 1) // 2]:
        entries.insert(position, forge(kind, value, last=base + position))
    g.anchor("AAPL", entries)
    assert g.admit(entries) == real


@given(st.lists(st.tuples(st.sampled_from(["AAPL", "MSFT", "X"]), st.integers(1, 2**60))))
def test_admitted_seqs_always_increase_per_symbol(items: list[tuple[str, int]]) -> None:
    """For any input at all, each symbol's admitted seqs strictly increase."""
    g = guard()
    last: dict[str, int] = {}
    for t in g.admit(tick(seq, symbol) for symbol, seq in items):
        assert t.seq > last.get(t.symbol, 0)
        last[t.symbol] = t.seq


def test_a_real_jump_is_followed_after_one_tick() -> None:
    """Two consecutive ticks beyond the jump limit are believed: a real gap never freezes a symbol."""
    g = guard()
    g.seen["AAPL"] = 10
    assert g.admit([tick(5000), tick(5001), tick(5002)]) == [tick(5001), tick(5002)]
    assert g.rejected["seq_jump"] == 1


def test_a_trimmed_stream_reanchors_without_rejections() -> None:
    """A catch-up that finds the stream trimmed far past the last seen seq starts from it quietly."""
    g = guard()
    g.seen["AAPL"] = 10
    run = [tick(seq) for seq in range(5000, 5050)]
    g.anchor("AAPL", run)
    assert g.admit(run) == run and sum(g.rejected.values()) == 0


def test_history_entries_are_decoded_one_by_one() -> None:
    """Garbage, a wrong symbol or a bad field in one history entry drops that entry only."""
    g = guard()
    good = [{b"t": encode_tick("AAPL", seq, 1.0, 10.0, 10.0, 10.0, 1, seq)} for seq in (1, 2, 3)]
    entries = [
        good[2],
        {b"t": b"not json"},
        {b"t": b'{"symbol":"AAPL","seq":"x"}'},
        {b"x": b"no t field"},
        {b"t": encode_tick("MSFT", 9, 1.0, 10.0, 10.0, 10.0, 1, 9)},
        good[1],
        good[0],
    ]
    assert [t.seq for t in g.history("AAPL", entries)] == [1, 2, 3]
    assert g.rejected["malformed"] == 3 and g.rejected["unknown_symbol"] == 1


def test_a_malformed_feed_entry_yields_nothing() -> None:
    """A feed entry that is not a list of valid ticks is rejected whole."""
    g = guard()
    assert g.batch(b'[{"symbol":"AAPL","seq":"x"}]') == []
    assert g.batch(b"\xff\xfe") == []
    assert [t.seq for t in g.batch(b"[" + encode_tick("AAPL", 1, 1, 1, 1, 1, 1, 1) + b"]")] == [1]
    assert g.rejected["malformed"] == 2


def test_rejections_are_logged_at_most_once_per_period(caplog: pytest.LogCaptureFixture) -> None:
    """A flood of bad entries makes one log line per LOG_PERIOD, which counts the ones in between."""
    clock = [100.0]
    g = guard(clock)
    with caplog.at_level(logging.WARNING, "test.bus_guard"):
        for _ in range(500):
            g.admit([tick(1, symbol="NOPE")])
        clock[0] += LOG_PERIOD
        g.admit([tick(1, symbol="NOPE")])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "499 more rejected" in lines[1]
    assert g.rejected["unknown_symbol"] == 501
