"""The pure fan-out: books, conflation, throttling and the timer wheel, without sockets."""

from __future__ import annotations

import json
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_server.conflation import Fanout, Subscriber, SymbolBook, TimerWheel
from ticker_server.protocol import Tick, Ticks, decode_server_message


def make_tick(symbol: str, seq: int, price: float, size: int, volume: int, ts: float = 0.0) -> Tick:
    return Tick(
        symbol=symbol,
        seq=seq,
        ts=ts,
        price=price,
        bid=round(price - 0.01, 2),
        ask=round(price + 0.01, 2),
        size=size,
        volume=volume,
    )


def tick_stream(
    symbol: str, prices: list[float], sizes: list[int], first_seq: int = 1
) -> list[Tick]:
    volume = 0
    out = []
    for i, (price, size) in enumerate(zip(prices, sizes, strict=False)):
        volume += size
        out.append(make_tick(symbol, first_seq + i, price, size, volume, ts=float(i)))
    return out


def frame_ticks(frame: bytes | None) -> list[Tick]:
    assert frame is not None
    message = decode_server_message(frame)
    assert isinstance(message, Ticks)
    return list(message.ticks)


prices_st = st.lists(st.integers(2, 100_000).map(lambda c: c / 100), min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(prices=prices_st, data=st.data())
def test_merged_update_covers_exactly_the_skipped_ticks(
    prices: list[float], data: st.DataObject
) -> None:
    """A conflated update's merged, high, low and size equal those of the ticks it stands for."""
    sizes = data.draw(
        st.lists(
            st.integers(1, 50).map(lambda n: n * 100), min_size=len(prices), max_size=len(prices)
        )
    )
    cut = data.draw(st.integers(0, len(prices) - 1))
    ticks = tick_stream("AAPL", prices, sizes)
    fanout = Fanout(history=100)
    sub = Subscriber()
    fanout.ingest(ticks[:cut])
    fanout.subscribe(sub, "AAPL", interval=1.0)
    sub.blocked = True  # the I/O layer stops taking frames; everything after the cut conflates
    fanout.ingest(ticks[cut:])
    [update] = frame_ticks(fanout.take_frame(sub, now=100.0))
    covered = ticks[cut:]
    assert update.seq == ticks[-1].seq
    assert update.price == ticks[-1].price
    assert update.volume == ticks[-1].volume
    assert update.size == sum(t.size for t in covered)
    assert update.covers == len(covered)
    if len(covered) > 1:
        assert update.high == max(t.price for t in covered)
        assert update.low == min(t.price for t in covered)
    else:
        assert update.merged is None and update.high is None and update.low is None


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=300),
    rate=st.sampled_from([1.0, 2.0, 4.0, 10.0, 50.0]),
)
def test_throttle_respects_max_rate_and_freshness(gaps: list[float], rate: float) -> None:
    """Updates of one symbol are at least 1/rate apart, seq strictly increases, and nothing is held longer than ~1/rate."""
    fanout = Fanout(history=10)
    sub = Subscriber()
    fanout.book("MSFT")
    fanout.subscribe(sub, "MSFT", interval=1.0 / rate)
    sent: list[tuple[float, Tick]] = []
    now = 0.0
    seq = 0

    def pump(at: float) -> None:
        dirty = fanout.advance(at)
        if sub in dirty or sub.ready:
            frame = fanout.take_frame(sub, at)
            if frame is not None:
                sent.extend((at, t) for t in frame_ticks(frame))

    for gap in gaps:
        # Fire every timer that fell due before this tick, as the event loop would.
        while (due := fanout.wheel.next_time()) is not None and due <= now + gap:
            pump(due)
        now += gap
        seq += 1
        fanout.ingest([make_tick("MSFT", seq, 100.0 + seq / 100, 100, 100 * seq, ts=now)])
        if sub.ready:
            pump(now)
    while (due := fanout.wheel.next_time()) is not None:
        pump(due)
    times = [at for at, _ in sent]
    assert all(b - a >= 1.0 / rate - 1e-9 for a, b in pairwise(times))
    seqs = [t.seq for _, t in sent]
    assert seqs == sorted(set(seqs))
    assert seqs[-1] == seq, "the newest tick is always delivered in the end"
    assert sum(t.covers for _, t in sent) == seq, (
        "every generated tick is accounted for exactly once"
    )
    for at, tick in sent:
        assert at - tick.ts <= 1.0 / rate + fanout.wheel.resolution + 1e-9


def test_unthrottled_subscriber_behind_gets_each_tick_until_far_behind() -> None:
    """Unthrottled and a few ticks behind: every tick; more than UNMERGED_MAX behind: one merged update."""
    from ticker_server.conflation import UNMERGED_MAX

    fanout = Fanout(history=100)
    sub = Subscriber()
    fanout.book("AAPL")
    fanout.subscribe(sub, "AAPL", interval=0.0)
    ticks = tick_stream("AAPL", [1.0 + i / 100 for i in range(60)], [100] * 60)
    fanout.ingest(ticks[:3])
    assert [t.seq for t in frame_ticks(fanout.take_frame(sub, 0.0))] == [1, 2, 3]
    fanout.ingest(ticks[3 : 4 + UNMERGED_MAX])
    [update] = frame_ticks(fanout.take_frame(sub, 0.0))
    assert (update.seq, update.merged) == (4 + UNMERGED_MAX, 1 + UNMERGED_MAX)


def test_unthrottled_subscriber_gets_every_tick_once() -> None:
    """With interval 0 each ingested tick is ready at once and none is merged."""
    fanout = Fanout(history=10)
    sub = Subscriber()
    fanout.book("AAPL")
    fanout.subscribe(sub, "AAPL", interval=0.0)
    got = []
    for tick in tick_stream("AAPL", [1.0, 1.01, 1.02], [100, 100, 100]):
        assert fanout.ingest([tick]) == {sub}
        got += frame_ticks(fanout.take_frame(sub, 0.0))
    assert [t.seq for t in got] == [1, 2, 3]
    assert all(t.merged is None for t in got)


def test_stale_or_repeated_seq_is_ignored() -> None:
    """A tick whose seq is not newer than the book's never reaches a subscriber."""
    fanout = Fanout(history=10)
    sub = Subscriber()
    ticks = tick_stream("AAPL", [1.0, 1.01], [100, 100])
    fanout.ingest(ticks)
    fanout.subscribe(sub, "AAPL", interval=0.0)
    assert fanout.ingest([ticks[0], ticks[1]]) == set()
    assert fanout.books["AAPL"].seq == 2


def test_unsubscribe_stops_updates_and_drops_timer_entries() -> None:
    """After unsubscribe no update of that symbol is ready, even from an earlier timer entry."""
    fanout = Fanout(history=10)
    sub = Subscriber()
    fanout.book("AAPL")
    fanout.subscribe(sub, "AAPL", interval=1.0)
    fanout.ingest(tick_stream("AAPL", [1.0], [100]))
    assert fanout.take_frame(sub, 0.0) is not None
    fanout.unsubscribe(sub, "AAPL")
    fanout.ingest(tick_stream("AAPL", [1.0, 2.0], [100, 100])[1:])
    assert fanout.advance(5.0) == set()
    assert fanout.take_frame(sub, 5.0) is None


def test_book_snapshot_and_since() -> None:
    """Snapshots are the newest ticks oldest first; since() gives exactly the gap or None when it is gone."""
    book = SymbolBook("AAPL", history=5)
    for tick in tick_stream("AAPL", [1.0 + i / 100 for i in range(8)], [100] * 8):
        book.append(tick)
    assert [json.loads(b)["seq"] for b in book.snapshot(3)] == [6, 7, 8]
    assert [json.loads(b)["seq"] for b in book.snapshot(50)] == [4, 5, 6, 7, 8]
    assert [json.loads(b)["seq"] for b in (book.since(5) or [])] == [6, 7, 8]
    assert book.since(8) == []
    assert book.since(2) is None
    assert book.volume_at(6) == 600


def test_resume_from_since_outside_history_conflates_the_gap() -> None:
    """A subscriber resuming from a seq the book still knows gets one merged update for the gap."""
    fanout = Fanout(history=3)
    fanout.ingest(tick_stream("AAPL", [1.0, 5.0, 2.0, 3.0, 4.0], [100, 200, 300, 400, 500]))
    sub = Subscriber()
    fanout.subscribe(sub, "AAPL", interval=0.0, since=1)
    [update] = frame_ticks(fanout.take_frame(sub, 0.0))
    assert (update.merged, update.high, update.low, update.size) == (4, 5.0, 2.0, 1400)


def test_timer_wheel_orders_and_rounds_up() -> None:
    """Items pop no earlier than scheduled, in time order."""
    wheel = TimerWheel(resolution=0.01)
    sub = Subscriber()
    state = object()
    wheel.schedule(0.105, (sub, "B", state))  # type: ignore[arg-type]
    wheel.schedule(0.05, (sub, "A", state))  # type: ignore[arg-type]
    assert wheel.pop_due(0.049) == []
    assert [item[1] for item in wheel.pop_due(0.05)] == ["A"]
    assert wheel.pop_due(0.109) == []
    assert [item[1] for item in wheel.pop_due(0.11)] == ["B"]
    assert wheel.next_time() is None


def test_group_shares_one_cursor_and_leaving_keeps_the_position() -> None:
    """In-step unthrottled subscribers ride one group; one that leaves carries on from the group's seq."""
    fanout = Fanout(history=10)
    a, b = Subscriber(), Subscriber()
    ticks = tick_stream("AAPL", [1.0 + i / 100 for i in range(6)], [100] * 6)
    fanout.ingest(ticks[:1])
    for sub in (a, b):
        fanout.subscribe(sub, "AAPL", interval=0.0)
        assert fanout.join(sub)
    assert a.group is b.group is not None
    group = a.group
    assert fanout.ingest(ticks[1:2]) == {group}, "a tick visits the group, not each member"
    assert [t.seq for t in frame_ticks(fanout.take_frame(group, 0.0))] == [2]
    assert fanout.delivered == 2, "one update counted per member"
    fanout.ingest(ticks[2:4])  # pending for the group, then a member is cut off
    assert fanout.leave(a) is True
    assert [t.seq for t in frame_ticks(fanout.take_frame(a, 0.0))] == [3, 4]
    assert a.group is None and b.group is group
    fanout.remove(b)
    assert fanout.groups == {}, "an empty group is dropped"


def test_throttled_or_lagging_subscribers_do_not_join() -> None:
    """Only unthrottled subscribers holding the newest tick of every symbol may join a group."""
    fanout = Fanout(history=10)
    fanout.ingest(tick_stream("AAPL", [1.0, 1.01], [100, 100]))
    throttled, lagging = Subscriber(), Subscriber()
    fanout.subscribe(throttled, "AAPL", interval=0.5)
    fanout.subscribe(lagging, "AAPL", interval=0.0, since=1)
    assert not fanout.join(throttled)
    assert not fanout.join(lagging)
    fanout.take_frame(lagging, 0.0)
    assert fanout.join(lagging)
