"""The client's edge without sockets: frames in, believable ticks and counted rejections out."""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_desktop.edge import (
    MAX_SEQ,
    EdgeLimits,
    Gate,
    LogThrottle,
    Report,
    SequenceGuard,
    check_hello,
    check_tick,
    decode_frame,
)
from ticker_desktop.retry import Backoff, close_floor
from ticker_server.protocol import Hello, Snapshot, Tick, Ticks

NOW = 1_800_000_000.0
LIMITS = EdgeLimits()


def tick(seq: int | str = 1, symbol: str = "AAPL", **fields: Any) -> dict[str, Any]:
    """A believable tick as a server would send it, with ``fields`` replaced."""
    raw: dict[str, Any] = {
        "symbol": symbol,
        "seq": seq,
        "ts": NOW,
        "price": 100.0,
        "bid": 99.99,
        "ask": 100.01,
        "size": 100,
        "volume": 1000,
    }
    raw.update(fields)
    return raw


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_gate(clock: Clock | None = None) -> tuple[Gate, list[Report]]:
    reports: list[Report] = []
    clock = clock or Clock()
    return Gate(LIMITS, 10.0, reports.append, lambda: NOW, clock), reports


# ---------------------------------------------------------------------- check_tick

POISON = [
    ("price NaN", {"price": math.nan}, "bad_tick"),  # the model's gt=0 already refuses NaN
    ("price Infinity", {"price": math.inf}, "not_finite"),
    ("negative price", {"price": -5.0}, "bad_tick"),
    ("ts NaN", {"ts": math.nan}, "not_finite"),
    ("ts -Infinity", {"ts": -math.inf}, "not_finite"),
    ("high Infinity", {"merged": 3, "high": math.inf, "low": 99.0}, "not_finite"),
    ("absurd price", {"price": 1e300}, "absurd_value"),
    ("negative low", {"merged": 3, "high": 101.0, "low": -5.0}, "absurd_value"),
    ("crossed bid/ask", {"bid": 100.5, "ask": 99.5}, "absurd_value"),
    ("low above high", {"merged": 3, "high": 99.0, "low": 101.0}, "absurd_value"),
    ("size beyond 2**53", {"size": 2**63}, "absurd_value"),
    ("seq 2**63", {"seq": 2**63}, "absurd_value"),
    ("ts a day ahead", {"ts": NOW + 86400}, "ts_future"),
    ("ts ten years ago", {"ts": NOW - 10 * 365 * 86400}, "ts_past"),
]


@pytest.mark.parametrize(("fields", "reason"), [p[1:] for p in POISON], ids=[p[0] for p in POISON])
def test_poisoned_tick_is_rejected_with_its_reason(fields: dict[str, Any], reason: str) -> None:
    """Each kind of unbelievable tick, sent as JSON beside a good one, is refused for its reason."""
    frame = json.dumps({"type": "ticks", "ticks": [tick(1), tick(**{"seq": 2, **fields})]})
    gate, _ = make_gate()
    decoded = decode_frame(frame)
    for rejected, detail in decoded.rejected:
        gate.reject(rejected, detail)
    assert isinstance(decoded.message, Ticks)
    assert [t.seq for t in gate.ticks(decoded.message.ticks, {"AAPL"})] == [1]
    assert gate.rejections.totals == {reason: 1}


@settings(max_examples=200)
@given(
    price=st.floats(0.01, 1e6),
    spread=st.floats(0, 10),
    skew=st.floats(-86400, 299),
    seq=st.integers(1, MAX_SEQ),
    merged=st.none() | st.integers(2, 10_000),
)
def test_believable_ticks_pass(
    price: float, spread: float, skew: float, seq: int, merged: int | None
) -> None:
    """Any finite tick with sane prices, counts and a ts near our clock passes untouched."""
    fields: dict[str, Any] = {"price": price, "bid": price, "ask": price + spread, "seq": seq}
    fields["ts"] = NOW + skew
    if merged:
        # Servers of this version send open 0.0 on merged ticks: "not known", not a price.
        fields.update(merged=merged, high=price + spread, low=price, open=0.0)
    assert check_tick(Tick.model_validate(tick(**fields)), NOW, LIMITS) is None


# -------------------------------------------------------------------- decode_frame


def test_one_bad_tick_costs_only_itself() -> None:
    """A ticks frame with bad entries keeps every good one; each bad one is a rejection."""
    frame = json.dumps(
        {
            "type": "ticks",
            "ticks": [tick(1), tick(2, price=-1), {"symbol": "AAPL"}, "x", tick("x"), tick(5)],
        }
    )
    decoded = decode_frame(frame)
    assert isinstance(decoded.message, Ticks)
    assert [t.seq for t in decoded.message.ticks] == [1, 5]
    assert [r for r, _ in decoded.rejected] == ["bad_tick"] * 4


def test_snapshot_keeps_only_its_own_symbol() -> None:
    """Ticks of another symbol inside a snapshot are rejected, the rest kept."""
    frame = json.dumps(
        {"type": "snapshot", "symbol": "AAPL", "ticks": [tick(1), tick(2, symbol="MSFT")]}
    )
    decoded = decode_frame(frame)
    assert isinstance(decoded.message, Snapshot)
    assert [t.symbol for t in decoded.message.ticks] == ["AAPL"]
    assert [r for r, _ in decoded.rejected] == ["wrong_symbol"]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json at all", "malformed"),
        ("[" * 60_000, "malformed"),  # nests too deep for json: RecursionError, not ValueError
        ('{"type": "ticks", "ticks": "many"}', "malformed"),
        ('{"type": "snapshot", "ticks": []}', "malformed"),
        ('{"type": "hello", "protocol": 1}', "malformed"),
        ('{"type": "weather", "sunny": true}', "unknown_type"),
        ("[1, 2, 3]", "malformed"),
        (b"\xff\xfe\x00binary", "malformed"),
    ],
)
def test_garbage_frames_become_rejections(frame: str | bytes, reason: str) -> None:
    """Garbage never raises out of the edge; it comes back as a reason."""
    decoded = decode_frame(frame)
    assert decoded.message is None
    assert [r for r, _ in decoded.rejected] == [reason]


@settings(max_examples=300)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_decode_frame_never_raises(frame: str | bytes) -> None:
    """Whatever text or bytes arrive, decoding returns (a message, or rejections)."""
    decoded = decode_frame(frame)
    assert decoded.message is not None or decoded.rejected


def test_hello_timings_must_be_believable() -> None:
    """A hello whose heartbeat or rate is not a real number is refused (it drives our watchdog)."""
    good = {"symbols": ["AAPL"], "max_rate": 50.0, "heartbeat": 1.0}
    assert check_hello(Hello.model_validate(good)) is None
    for bad in ({"heartbeat": math.nan}, {"heartbeat": -1.0}, {"max_rate": math.inf}):
        assert check_hello(Hello.model_validate({**good, **bad})) is not None


# ------------------------------------------------------------------- sequence guard


def test_seq_jump_of_2_62_is_refused_and_later_real_ticks_still_pass() -> None:
    """A seq far beyond the last held is a lie: refused, so the honest next seq is still newer."""
    guard = SequenceGuard()
    assert guard.check("AAPL", 100, now=0.0) is None
    assert guard.check("AAPL", 100 + 2**62, now=0.1) == "seq_jump"
    assert guard.check("AAPL", 101, now=0.2) is None
    assert guard.check("AAPL", 90, now=0.3) == "seq_old"


@settings(max_examples=200)
@given(
    away=st.floats(0, 7 * 86400),
    jump=st.integers(1, 2**62),
)
def test_seq_jump_is_plausible_exactly_within_slack_plus_rate(away: float, jump: int) -> None:
    """A jump passes iff it is within seq_slack + seq_rate x seconds since the last tick held."""
    guard = SequenceGuard(LIMITS)
    guard.check("AAPL", 1, now=0.0)
    allowed = LIMITS.seq_slack + LIMITS.seq_rate * away
    assert (guard.check("AAPL", 1 + jump, now=away) is None) == (jump <= allowed)


# ------------------------------------------------------------------------ the gate


def test_snapshot_larger_than_asked_is_cut_to_what_was_asked() -> None:
    """No more snapshot ticks than the subscribe asked for; the rest is counted as excess."""
    gate, reports = make_gate()
    gate.expect_snapshot("AAPL", 50)
    frames = [[tick(s) for s in range(start, start + 100)] for start in (1, 101, 201)]
    kept = [
        t
        for ticks in frames
        for t in gate.snapshot(
            Snapshot.model_validate({"symbol": "AAPL", "ticks": ticks}), {"AAPL"}
        )
    ]
    assert [t.seq for t in kept] == list(range(1, 51))
    assert gate.rejections.totals == {"snapshot_excess": 250}
    assert [r.reason for r in reports] == ["snapshot_excess"]  # one line for three frames


def test_ticks_of_symbols_not_wanted_are_quietly_counted() -> None:
    """Ticks and snapshots of a symbol we did not ask for never pass."""
    gate, _ = make_gate()
    ticks = [Tick.model_validate(tick(1, symbol="MSFT")), Tick.model_validate(tick(1))]
    assert [t.symbol for t in gate.ticks(ticks, {"AAPL"})] == ["AAPL"]
    snapshot = Snapshot.model_validate({"symbol": "TSLA", "ticks": [tick(1, symbol="TSLA")]})
    assert gate.snapshot(snapshot, {"AAPL"}) == []
    assert gate.rejections.totals == {"unsubscribed": 2}


# ---------------------------------------------------------------------- log throttle


@settings(max_examples=200)
@given(
    events=st.lists(
        st.tuples(st.floats(0, 5), st.sampled_from(["a", "b", "c"]), st.integers(1, 5)),
        max_size=200,
    )
)
def test_throttle_reports_once_per_interval_and_loses_no_count(
    events: list[tuple[float, str, int]],
) -> None:
    """Reports of one reason are an interval apart, and reported plus pending equals the total."""
    clock = Clock()
    throttle = LogThrottle(10.0, clock)
    reports: list[tuple[float, Report]] = []
    for step, reason, n in events:
        clock.now += step
        report = throttle.add(reason, f"detail {n}", n)
        if report is not None:
            reports.append((clock.now, report))
    for reason in "abc":
        times = [at for at, r in reports if r.reason == reason]
        assert all(b - a >= 10.0 for a, b in itertools.pairwise(times))
    clock.now += 11.0  # past every interval (10.0 exactly can fall short in floating point)
    reports += [(clock.now, r) for r in throttle.flush()]
    for reason in "abc":
        sent = sum(r.count for _, r in reports if r.reason == reason)
        assert sent == sum(n for _, name, n in events if name == reason)
    assert throttle.flush() == []


def test_flood_of_garbage_logs_one_line_per_interval() -> None:
    """Sixty garbage frames a second for a minute make six lines, not 3,600."""
    clock = Clock()
    throttle = LogThrottle(10.0, clock)
    lines = 0
    for _ in range(3600):
        clock.now += 1 / 60
        lines += throttle.add("malformed", "x") is not None
    assert lines == 6
    assert throttle.totals == {"malformed": 3600}


# ---------------------------------------------------------------------------- retry


def test_hello_then_close_server_gets_a_few_reconnects_a_minute() -> None:
    """With the default backoff never reset (no connection lived 10 s), a minute holds ~10 tries.

    Before, the backoff reset on every hello: 216-240 reconnects a minute.
    """
    for seed in range(20):
        backoff = Backoff(0.5, 30.0, random.Random(seed))
        elapsed, attempts = 0.0, 0
        while elapsed < 60.0:
            elapsed += backoff.next_delay()
            attempts += 1
        assert attempts <= 25, (seed, attempts)
        # and from then on at most one try in 30 s on average
        later = [backoff.next_delay() for _ in range(200)]
        assert 12.0 < sum(later) / len(later) <= 15.0 + 1.5


def test_try_again_later_and_policy_closes_wait_longer() -> None:
    """1013 and 1008 add their waits; any other code (or none) adds nothing."""
    assert close_floor(1013, 10.0, 30.0) == 10.0
    assert close_floor(1008, 10.0, 30.0) == 30.0
    for code in (None, 1000, 1006, 1011, 4000):
        assert close_floor(code, 10.0, 30.0) == 0.0
    assert Backoff(0.5, 30.0, random.Random(1)).next_delay(10.0) >= 10.0
