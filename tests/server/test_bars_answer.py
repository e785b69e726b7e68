"""The pure answer to a bars request: exact prices on the wire, pages, frames, the partial mark."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_server.bars import BarStore
from ticker_server.bars_answer import (
    EncodedRuns,
    answer_bars,
    encode_bar,
    encode_bars,
    select_bars,
    start_answer,
)
from ticker_server.protocol import MAX_FRAME, BarsRequest, Tick


@given(st.lists(st.integers(1, 2**31 - 1), min_size=1, max_size=50))
def test_prices_on_the_wire_parse_to_the_ticks_own_floats(cents: list[int]) -> None:
    """A bar's prices, written from cents, read back as exactly cents / 100, both encoders."""
    rows = [(60 * i, c, c, c, c, i, 1) for i, c in enumerate(cents)]
    bars = np.array(rows, dtype=BarStore(["X"]).series["X"][1].closed.dtype)
    for row, one, many in zip(rows, [encode_bar(r) for r in rows], encode_bars(bars), strict=True):
        assert one == many
        decoded = json.loads(one)
        assert [decoded[k] for k in "ohlc"] == [row[1] / 100] * 4


def store_with(seconds: int) -> BarStore:
    """One tick a second for ``seconds`` seconds, prices walking a cent at a time."""
    store = BarStore(["AAPL", "MSFT"])
    ticks = [
        Tick(symbol="AAPL", seq=i + 1, ts=1000.0 + i, price=(10_000 + i) / 100,
             bid=1.0, ask=2.0, size=100, volume=100 * (i + 1))
        for i in range(seconds)
    ]  # fmt: skip
    store.ingest(ticks)
    return store


def answer(store: BarStore, **request: object) -> tuple[list[dict[str, object]], list[bytes]]:
    frames = answer_bars(store, BarsRequest.model_validate({"type": "bars", "id": 1, **request}))
    messages = [json.loads(f) for f in frames]
    return [b for m in messages for b in m["bars"]], frames


def test_the_forming_bar_is_partial_until_any_tick_at_or_after_its_end() -> None:
    """The newest bar is partial until the store takes a tick (of any symbol: the feed is one
    ordered stream) at or after its end; then it is complete, and a new one forms."""
    store = store_with(10)
    bars, _ = answer(store, symbol="AAPL", interval=5)
    assert [(b["t"], b.get("partial")) for b in bars] == [(1000, None), (1005, True)]
    store.ingest([Tick(symbol="MSFT", seq=1, ts=1009.5, price=1, bid=1, ask=2, size=1, volume=1)])
    assert answer(store, symbol="AAPL", interval=5)[0][-1].get("partial") is True
    store.ingest([Tick(symbol="MSFT", seq=2, ts=1010.0, price=1, bid=1, ask=2, size=1, volume=1)])
    assert answer(store, symbol="AAPL", interval=5)[0][-1].get("partial") is None
    store.ingest([Tick(symbol="AAPL", seq=11, ts=1010.0, price=1, bid=1, ask=2, size=1, volume=1)])
    bars, _ = answer(store, symbol="AAPL", interval=5)
    assert [(b["t"], b.get("partial")) for b in bars] == [(1000, None), (1005, None), (1010, True)]


def test_limit_and_before_select_the_newest_bars_before_a_time() -> None:
    """limit takes the newest; before (exclusive) pages back; frames stay within 64 KiB."""
    store = store_with(3000)
    bars, frames = answer(store, symbol="aapl", interval=1, limit=2000)
    assert [b["t"] for b in bars] == list(range(2000, 4000))
    assert len(frames) > 1 and all(len(f) <= MAX_FRAME for f in frames)
    assert [json.loads(f)["done"] for f in frames] == [False] * (len(frames) - 1) + [True]
    older, _ = answer(store, symbol="AAPL", interval=1, limit=3, before=2000)
    assert [b["t"] for b in older] == [1997, 1998, 1999]
    assert [b["o"] for b in older] == [109.97, 109.98, 109.99]
    assert answer(store, symbol="AAPL", interval=60, before=900)[0] == []


def per_bar(store: BarStore, request: BarsRequest) -> list[bytes]:
    """The page's bars the obvious way: each row encoded alone, the forming one marked."""
    page, partial = select_bars(store, request.symbol, request.interval, request.limit, None)
    rows = page.tolist()
    return [encode_bar(row, partial and i == len(rows) - 1) for i, row in enumerate(rows)]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3000), st.lists(st.integers(0, 30), max_size=20))
def test_an_answer_written_in_steps_is_every_bar_once_in_frames_within_max_frame(
    limit: int, ingest_at: list[int]
) -> None:
    """Stepped to the end, an answer's frames hold exactly the page's bars in order, each frame
    within MAX_FRAME and only the last done; ticks taken between steps change nothing."""
    store = store_with(3000)
    request = BarsRequest(type="bars", symbol="AAPL", interval=1, limit=limit, id="x")
    bars = per_bar(store, request)
    expected = answer_bars(store, request)
    answer = start_answer(store, request)
    frames: list[bytes] = []
    seq = 3000
    for step in range(10_000):
        if answer.done:
            break
        if step in ingest_at:  # the store moves on while the answer is written
            seq += 1
            store.ingest([Tick(symbol="AAPL", seq=seq, ts=1000.0 + seq, price=1, bid=1, ask=2,
                               size=1, volume=seq)])  # fmt: skip
        frames += answer.step()
    assert answer.step() == []
    assert frames == expected
    assert all(len(frame) <= MAX_FRAME for frame in frames)
    messages = [json.loads(frame) for frame in frames]
    assert [m["done"] for m in messages] == [False] * (len(frames) - 1) + [True]
    assert [json.loads(b) for b in bars] == [b for m in messages for b in m["bars"]]


def test_cached_runs_give_the_same_frames_and_never_hold_the_forming_bar() -> None:
    """Answers sharing a cache of encoded runs equal answers without one, reuse the inner runs
    of overlapping pages, and show the forming bar as it is now, not as it was cached."""
    store = store_with(3000)
    runs = EncodedRuns()
    for limit, before in ((3000, None), (2000, None), (1000, 3500), (2500, 3900)):
        request = BarsRequest(type="bars", symbol="AAPL", interval=1, limit=limit, before=before)
        assert answer_bars(store, request, runs) == answer_bars(store, request)
    assert runs.hits >= 10 and 0 < runs.nbytes <= runs.capacity
    request = BarsRequest(type="bars", symbol="AAPL", interval=5, limit=10)
    before = answer_bars(store, request, runs)
    store.ingest([Tick(symbol="AAPL", seq=3001, ts=3999.5, price=1, bid=1, ask=2, size=7,
                       volume=1)])  # fmt: skip
    after = answer_bars(store, request, runs)
    assert after == answer_bars(store, request) and after != before
    small = EncodedRuns(capacity=30_000)
    answer_bars(store, BarsRequest(type="bars", symbol="AAPL", interval=1, limit=3000), small)
    assert 0 < small.nbytes <= 30_000
