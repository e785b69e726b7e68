"""Bars on the client: the session assembles the server's own frames, checks each bar, merges pages."""

from __future__ import annotations

import json
from random import Random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_desktop.bars import BarArrays, check_bar, merge_bars
from ticker_desktop.edge import EdgeLimits
from ticker_desktop.options import ClientOptions
from ticker_desktop.session import Answer, ClientSession
from ticker_desktop.watched import WatchedSymbols
from ticker_server.bars import BarStore
from ticker_server.bars_answer import answer_bars
from ticker_server.protocol import Bar, Bars, BarsRequest, Error, Hello, Tick, encode

NOW = 1_764_000_000.0


def session_at(now: float = NOW) -> ClientSession:
    session = ClientSession(
        ClientOptions(), WatchedSymbols(["AAPL"]), wall=lambda: now, monotonic=lambda: 0.0
    )
    session.open(encode(Hello(symbols=["AAPL"], max_rate=0.0, heartbeat=1.0)))
    session.data_to_send()
    return session


def bar_store(seconds: int, start: float) -> BarStore:
    """One tick a second for ``seconds`` seconds from ``start``, prices walking a cent at a time."""
    store = BarStore(["AAPL"])
    ticks = [
        Tick(symbol="AAPL", seq=i + 1, ts=start + i + 0.5, price=(10_000 + i % 97) / 100,
             bid=1.0, ask=2.0, size=100 + i % 7, volume=100 * (i + 1))
        for i in range(seconds)
    ]  # fmt: skip
    store.ingest(ticks)
    return store


def answer_of(session: ClientSession, frames: list[bytes]) -> list[Answer]:
    for frame in frames:
        session.receive(frame)
    return session.answers_received()


def test_a_multi_frame_answer_becomes_one_checked_result() -> None:
    """The server's frames of 5,000 one-second bars (several, done=false first) give one answer."""
    store = bar_store(7200, NOW - 7200)
    session = session_at()
    rid = session.bars("AAPL", 1, 5000)
    request = BarsRequest.model_validate(json.loads(session.data_to_send()[0]))
    assert (request.symbol, request.interval, request.limit, request.id) == ("AAPL", 1, 5000, rid)
    frames = answer_bars(store, request)
    assert len(frames) > 1, "the answer spans several frames"
    assert answer_of(session, frames[:-1]) == [], "no answer before the frame marked done"
    [answer] = answer_of(session, frames[-1:])
    assert answer.id == rid and isinstance(answer.message, Bars)
    bars = BarArrays.from_bars("AAPL", 1, answer.message.bars)
    assert len(bars) == 5000 and np.all(np.diff(bars.t) == 1)
    closed = store.series["AAPL"][1].closed
    assert np.array_equal(bars.t[:-1], closed["t"][-4999:])
    assert np.array_equal(np.rint(bars.close[:-1] * 100), closed["c"][-4999:])
    assert bars.partial, "the forming bar comes last, marked"
    assert session.gate.rejections.totals == {}
    assert rid not in session.pending


def test_bad_bars_are_dropped_one_by_one_and_counted() -> None:
    """Misaligned, crossed, out-of-order bars and one after the forming bar cost only themselves."""
    session = session_at()
    rid = session.bars("AAPL", 60, 10)
    good = {"o": 10.0, "h": 11.0, "l": 9.0, "c": 10.5, "v": 100, "n": 3}
    t0 = int(NOW // 60 * 60) - 600
    frame = {
        "type": "bars", "symbol": "AAPL", "interval": 60, "id": rid, "done": True,
        "bars": [
            {"t": t0, **good},
            {"t": t0 + 30, **good},  # misaligned
            {"t": t0 + 60, **good, "l": 12.0},  # low above high
            {"t": t0 + 120, **good},
            {"t": t0 + 60, **good},  # out of order
            {"t": t0 + 180, **good, "partial": True},
            {"t": t0 + 240, **good},  # after the forming bar
        ],
    }  # fmt: skip
    [answer] = answer_of(session, [json.dumps(frame).encode()])
    assert isinstance(answer.message, Bars)
    assert [b.t for b in answer.message.bars] == [t0, t0 + 120, t0 + 180]
    assert session.gate.rejections.totals == {
        "bar_misaligned": 1,
        "absurd_value": 1,
        "bar_order": 2,
    }


def test_an_error_answers_the_request_and_stray_frames_are_rejected() -> None:
    """An error reply ends the request as an error; bars nobody asked for are turned away."""
    session = session_at()
    rid = session.bars("AAPL", 60, 10)
    error = Error(code="bad_request", message="no", id=rid)
    [answer] = answer_of(session, [encode(error)])
    assert answer.error is not None and answer.error.code == "bad_request"
    stray = Bars(symbol="AAPL", interval=60, bars=[], id=rid)
    assert answer_of(session, [encode(stray)]) == []
    assert session.gate.rejections.totals == {"unasked": 1}


def test_check_bar_refuses_what_no_feed_sends() -> None:
    """Not finite, non-positive, future and huge-count bars are refused with their reason."""
    limits = EdgeLimits()
    t = int(NOW // 60 * 60)

    def bar(**fields: float) -> Bar:
        values: dict[str, float] = {"t": t, "o": 10, "h": 11, "l": 9, "c": 10, "v": 1, "n": 1}
        values.update(fields)
        return Bar.model_construct(**values)  # as decoded, without a second validation

    assert check_bar(bar(), 60, NOW, limits) is None
    assert check_bar(bar(c=float("nan")), 60, NOW, limits)[0] == "not_finite"  # type: ignore[index]
    assert check_bar(bar(l=0.0), 60, NOW, limits)[0] == "absurd_value"  # type: ignore[index]
    assert check_bar(bar(n=2**60), 60, NOW, limits)[0] == "absurd_value"  # type: ignore[index]
    assert check_bar(bar(t=t + 3600), 60, NOW, limits)[0] == "ts_future"  # type: ignore[index]


# --------------------------------------------------------------------- merge (hypothesis)


def truth(n: int, seed: int) -> BarArrays:
    rng = np.random.default_rng(seed)
    t = (np.cumsum(rng.integers(1, 3, n)) * 60).astype(np.float64)
    close = 100 + rng.random(n)
    counts = rng.integers(2, 50, n)
    return BarArrays(
        "AAPL", 60, t, close - 0.1, close + 0.5, close - 0.5, close,
        counts * 10, counts.astype(np.int64),
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 60),
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 30)), min_size=1, max_size=6),
    live_from=st.integers(0, 60),
    shuffle=st.randoms(use_true_random=False),
)
def test_pages_in_any_order_with_overlaps_rebuild_the_bars(
    n: int, seed: int, cuts: list[tuple[int, int]], live_from: int, shuffle: Random
) -> None:
    """Pages in any order and overlapping, onto live candles whose first lacks ticks: every start
    once, ascending; where a page has the bar it is the whole bar, elsewhere the live candle."""
    whole = truth(n, seed)
    live_from = min(live_from, n)
    seen = whole.count.copy()
    if live_from < n:
        seen[live_from] = max(1, seen[live_from] // 2)  # the client saw only its end
    partly = BarArrays("AAPL", 60, whole.t, whole.open, whole.high, whole.low, whole.close,
                       whole.volume, seen)  # fmt: skip
    in_page = np.zeros(n, bool)
    for start, size in cuts:
        in_page[start : start + size] = True
    in_live = np.arange(n) >= live_from
    pages = [whole.select(slice(start, start + size)) for start, size in cuts]
    shuffle.shuffle(pages)
    held = partly.select(in_live)
    for page in pages:
        held = merge_bars(held, page)
    expected_count = np.where(in_page, whole.count, seen)[in_page | in_live]
    assert np.array_equal(held.t, whole.t[in_page | in_live]), "each start once, none lost"
    assert np.array_equal(held.count, expected_count)
    assert np.array_equal(held.close, whole.close[in_page | in_live])


def test_merging_an_empty_page_changes_nothing() -> None:
    """An empty page (nothing older exists) leaves the held bars as they were."""
    held = truth(5, 1)
    assert merge_bars(held, BarArrays.empty("AAPL", 60)) is held
    assert merge_bars(BarArrays.empty("AAPL", 60), held) is held
