"""The pure fan-out: books, clock-aligned conflation, groups and the timer wheel, without sockets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_server.conflation import (
    CATCHUP_WINDOWS,
    UNMERGED_MAX,
    Fanout,
    Subscriber,
    SymbolBook,
    TimerWheel,
)
from ticker_server.protocol import (
    MAX_FRAME,
    RATES,
    Tick,
    Ticks,
    decode_server_message,
    ts_micros,
    window_micros,
)

T0 = 1_764_000_000.0
"""A Unix time on a whole minute, so window boundaries are easy to read."""


def make_tick(symbol: str, seq: int, price: float, size: int, volume: int, ts: float = T0) -> Tick:
    return Tick(
        symbol=symbol,
        seq=seq,
        ts=round(ts, 6),
        price=price,
        bid=round(price - 0.01, 2),
        ask=round(price + 0.01, 2),
        size=size,
        volume=volume,
    )


def tick_stream(
    symbol: str, prices: list[float], sizes: list[int], first_seq: int = 1, start: float = T0
) -> list[Tick]:
    volume = 0
    out = []
    for i, (price, size) in enumerate(zip(prices, sizes, strict=False)):
        volume += size
        out.append(make_tick(symbol, first_seq + i, price, size, volume, ts=start + i))
    return out


def frames_ticks(frames: list[bytes]) -> list[Tick]:
    out: list[Tick] = []
    for frame in frames:
        assert len(frame) <= MAX_FRAME
        message = decode_server_message(frame)
        assert isinstance(message, Ticks)
        out.extend(message.ticks)
    return out


# -- a model of the event loop around the pure fan-out -----------------------------------


@dataclass
class Run:
    """What one subscriber received: (send time, update) in order, and every tick generated."""

    sent: list[tuple[float, Tick]] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)


def simulate(
    gaps: list[float],
    lags: list[float],
    delays: list[float],
    rate: float,
    subscribe_after: int = 0,
    symbol: str = "MSFT",
) -> Run:
    """Feed ticks ``gaps`` apart (ts), each reaching the gateway ``lag`` after its ts, and flush
    ``delay`` after a subscriber became ready, as the gateway's event loop does."""
    fanout = Fanout(history=10_000)
    sub = Subscriber()
    fanout.book(symbol)
    run = Run()
    ts, arrival, volume = T0 + 0.0123, T0, 0
    for i, gap in enumerate(gaps):
        ts += gap
        arrival = max(arrival, ts + lags[i % len(lags)])
        volume += 100 * (i % 7 + 1)
        run.ticks.append(
            make_tick(symbol, i + 1, 100 + (i * 37 % 101) / 100, 100 * (i % 7 + 1), volume, ts)
        )
        run.arrivals.append(arrival)
    flush_at: float | None = None
    flushes = 0
    i = 0
    while True:
        due = fanout.wheel.next_time()
        candidates = [t for t in (flush_at, due) if t is not None]
        if i < len(run.ticks):
            candidates.append(run.arrivals[i])
        if not candidates:
            break
        now = min(candidates)
        if flush_at is not None and now == flush_at:
            flush_at = None
            for tick in frames_ticks(fanout.take_frames(sub, now)):
                run.sent.append((now, tick))
            flushes += 1
        elif due is not None and now == due:
            if fanout.advance(now) and flush_at is None:
                flush_at = now + delays[flushes % len(delays)]
        else:
            if i == subscribe_after:
                fanout.subscribe(sub, symbol, rate)
            if fanout.ingest([run.ticks[i]]) and flush_at is None:
                flush_at = now + delays[flushes % len(delays)]
            i += 1
        if sub.ready and flush_at is None:
            flush_at = now + delays[flushes % len(delays)]
    return run


def check_accounting(run: Run, first: int) -> None:
    """Seqs increase, each update stands for exactly the ticks since the previous one."""
    by_seq = {t.seq: t for t in run.ticks}
    previous = first
    for _, update in run.sent:
        covered = [by_seq[s] for s in range(previous + 1, update.seq + 1)]
        assert covered, "seq strictly increases"
        last = covered[-1]
        assert update.covers == len(covered), "merged equals the seq jump"
        assert (update.ts, update.price, update.volume) == (last.ts, last.price, last.volume)
        assert update.size == sum(t.size for t in covered)
        prices = [t.price for t in covered]
        if update.merged:
            assert (update.open, update.high, update.low) == (prices[0], max(prices), min(prices))
        else:
            assert update.open is None and update.high is None
        previous = update.seq
    assert previous == run.ticks[-1].seq, "the newest tick is always delivered in the end"


gaps_st = st.lists(
    st.one_of(st.just(0.0), st.floats(0.0, 0.05), st.floats(0.0, 3.0)), min_size=1, max_size=150
)
rates_st = st.sampled_from(RATES[:12])


@settings(max_examples=150, deadline=None)
@given(
    gaps=gaps_st,
    rate=rates_st,
    lag_share=st.lists(st.floats(0.0, 0.95), min_size=1, max_size=5),
    delay_share=st.lists(st.floats(0.0, 0.95), min_size=1, max_size=5),
    subscribe_after=st.integers(0, 20),
)
def test_every_update_covers_one_window_and_is_fresh(
    gaps: list[float],
    rate: float,
    lag_share: list[float],
    delay_share: list[float],
    subscribe_after: int,
) -> None:
    """With ticks arriving and flushes happening within a window: every update covers ticks of one clock-aligned window, exactly, and nothing is held longer than two windows plus the flush delay."""
    w = 1 / rate
    subscribe_after = min(subscribe_after, len(gaps) - 1)
    lags = [x * w for x in lag_share]
    delays = [x * w for x in delay_share]
    run = simulate(gaps, lags, delays, rate, subscribe_after)
    check_accounting(run, first=subscribe_after)
    window = window_micros(rate)
    by_seq = {t.seq: t for t in run.ticks}
    previous = subscribe_after
    for _at, update in run.sent:
        windows = {ts_micros(by_seq[s].ts) // window for s in range(previous + 1, update.seq + 1)}
        assert windows == {ts_micros(update.ts) // window}, "one window per update"
        previous = update.seq
    sent_at = {}
    for at, update in run.sent:
        for s in range(update.seq - update.covers + 1, update.seq + 1):
            sent_at[s] = at
    for tick in run.ticks[subscribe_after:]:
        assert sent_at[tick.seq] - tick.ts <= 2 * w + max(delays) + 1e-6, "two windows + a flush"


@settings(max_examples=150, deadline=None)
@given(
    gaps=gaps_st,
    rate=rates_st,
    delay_share=st.lists(st.floats(0.0, 0.95), min_size=1, max_size=5),
    subscribe_after=st.integers(0, 20),
)
def test_at_most_one_update_per_window_and_idle_ticks_go_at_once(
    gaps: list[float], rate: float, delay_share: list[float], subscribe_after: int
) -> None:
    """Ticks arriving at their ts: at most one update per window of send time, and a tick that finds nothing pending and nothing sent in its window goes out in the next flush."""
    w = 1 / rate
    window = window_micros(rate)
    subscribe_after = min(subscribe_after, len(gaps) - 1)
    delays = [x * w for x in delay_share]
    run = simulate(gaps, [0.0], delays, rate, subscribe_after)
    check_accounting(run, first=subscribe_after)
    send_windows = [ts_micros(at) // window for at, _ in run.sent]
    assert all(a < b for a, b in pairwise(send_windows)), "at most one update per window"
    # Immediacy: a tick arriving when everything before it was sent, and not in this window.
    sent_by: list[tuple[float, int]] = [(at, u.seq) for at, u in run.sent]
    for tick, arrival in zip(run.ticks, run.arrivals, strict=True):
        if tick.seq <= subscribe_after:
            continue
        before = [(at, seq) for at, seq in sent_by if at < arrival]
        caught_up = (before[-1][1] if before else subscribe_after) == tick.seq - 1
        quiet = not before or ts_micros(before[-1][0]) // window < ts_micros(arrival) // window
        if caught_up and quiet:
            at = next(at for at, seq in sent_by if seq >= tick.seq)
            assert at <= arrival + max(delays) + 1e-9, "no added latency at low load"


@settings(max_examples=100, deadline=None)
@given(
    prices=st.lists(st.integers(2, 100_000).map(lambda c: c / 100), min_size=2, max_size=300),
    rate=rates_st,
    spread=st.floats(0.001, 0.5),
)
def test_a_blocked_subscriber_gets_one_fresh_update_then_windows_again(
    prices: list[float], rate: float, spread: float
) -> None:
    """A subscriber that was blocked for many windows gets everything it missed as one exact merged update, then exact windows again."""
    w = 1 / rate
    fanout = Fanout(history=1000)
    sub = Subscriber()
    fanout.book("AAPL")
    fanout.subscribe(sub, "AAPL", rate)
    volume = 0
    ticks = []
    for i, price in enumerate(prices):
        volume += 100
        ticks.append(make_tick("AAPL", i + 1, price, 100, volume, T0 + i * spread * w))
    sub.blocked = True  # the I/O layer takes no frames meanwhile
    fanout.ingest(ticks)
    sub.blocked, sub.catch_up = False, True  # as the gateway does when the socket drains
    later = ticks[-1].ts + (CATCHUP_WINDOWS + 1) * w
    [update] = frames_ticks(fanout.take_frames(sub, later))
    assert (update.seq, update.covers, update.size) == (len(prices), len(prices), 100 * len(prices))
    if len(prices) > 1:
        assert (update.open, update.high, update.low) == (prices[0], max(prices), min(prices))


def test_unthrottled_subscriber_behind_gets_each_tick_until_far_behind() -> None:
    """Unthrottled and behind: every tick, unless it catches up from a full socket more than UNMERGED_MAX behind: then one merged update."""
    fanout = Fanout(history=100)
    sub = Subscriber()
    fanout.book("AAPL")
    fanout.subscribe(sub, "AAPL", 0.0)
    ticks = tick_stream("AAPL", [1.0 + i / 100 for i in range(60)], [100] * 60)
    fanout.ingest(ticks[:3])
    assert [t.seq for t in frames_ticks(fanout.take_frames(sub, T0))] == [1, 2, 3]
    fanout.ingest(ticks[3 : 4 + UNMERGED_MAX])
    sub.catch_up = True  # its socket was full and drained
    [update] = frames_ticks(fanout.take_frames(sub, T0))
    assert (update.seq, update.merged) == (4 + UNMERGED_MAX, 1 + UNMERGED_MAX)
    assert update.open == ticks[3].price


def test_stale_or_repeated_seq_is_ignored() -> None:
    """A tick whose seq is not newer than the book's never reaches a subscriber."""
    fanout = Fanout(history=10)
    sub = Subscriber()
    ticks = tick_stream("AAPL", [1.0, 1.01], [100, 100])
    fanout.ingest(ticks)
    fanout.subscribe(sub, "AAPL", 0.0)
    assert fanout.ingest([ticks[0], ticks[1]]) == set()
    assert fanout.books["AAPL"].seq == 2


def test_unsubscribe_stops_updates_and_drops_timer_entries() -> None:
    """After unsubscribe no update of that symbol is ready, even from an earlier timer entry."""
    fanout = Fanout(history=10)
    sub = Subscriber()
    fanout.book("AAPL")
    fanout.subscribe(sub, "AAPL", 1.0)
    fanout.ingest(tick_stream("AAPL", [1.0], [100]))
    assert fanout.take_frames(sub, T0) != []
    fanout.unsubscribe(sub, "AAPL")
    fanout.ingest(tick_stream("AAPL", [1.0, 2.0], [100, 100])[1:])
    assert fanout.advance(T0 + 5.0) == set()
    assert fanout.take_frames(sub, T0 + 5.0) == []
    assert len(fanout.wheel) == 0


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


def test_feed_clock_step_back_does_not_reopen_a_window() -> None:
    """A tick stamped earlier than its predecessor counts in its predecessor's window."""
    book = SymbolBook("AAPL", history=5)
    book.append(make_tick("AAPL", 1, 1.0, 100, 100, T0 + 2.5))
    book.append(make_tick("AAPL", 2, 1.0, 100, 200, T0 + 1.0))
    assert book.key(2) == ts_micros(T0 + 2.5)


def test_resume_from_since_outside_history_conflates_the_gap() -> None:
    """A subscriber resuming from a seq the book still knows gets one merged update for the gap."""
    fanout = Fanout(history=3)
    fanout.ingest(tick_stream("AAPL", [1.0, 5.0, 2.0, 3.0, 4.0], [100, 200, 300, 400, 500]))
    sub = Subscriber()
    fanout.subscribe(sub, "AAPL", 0.0, since=1)
    [update] = frames_ticks(fanout.take_frames(sub, T0))
    assert (update.merged, update.high, update.low, update.size) == (4, 5.0, 2.0, 1400)


def test_frames_stay_within_64k() -> None:
    """Many ready symbols are split into several ticks frames, none over MAX_FRAME."""
    fanout = Fanout(history=10)
    sub = Subscriber()
    symbols = [f"S{i:03d}" for i in range(800)]
    for symbol in symbols:
        fanout.book(symbol)
        fanout.subscribe(sub, symbol, 0.0)
    fanout.ingest(make_tick(s, 1, 123.45, 100, 100) for s in symbols)
    frames = fanout.take_frames(sub, T0)
    assert len(frames) > 1
    assert sorted(t.symbol for t in frames_ticks(frames)) == symbols


def test_timer_wheel_orders_by_boundary() -> None:
    """Entries pop at or after their due microsecond, in time order, one bucket per boundary."""
    wheel = TimerWheel()
    sub = Subscriber()
    state = object()
    wheel.schedule(105, (sub, "B", state))  # type: ignore[arg-type]
    wheel.schedule(50, (sub, "A", state))  # type: ignore[arg-type]
    wheel.schedule(50, (sub, "C", state))  # type: ignore[arg-type]
    assert wheel.next_time() == 50 / 1e6
    assert wheel.pop_due(49) == []
    assert [item[1] for item in wheel.pop_due(50)] == ["A", "C"]
    assert wheel.pop_due(104) == []
    assert [item[1] for item in wheel.pop_due(105)] == ["B"]
    assert wheel.next_time() is None


def test_group_shares_one_cursor_and_leaving_keeps_the_position() -> None:
    """In-step unthrottled subscribers ride one group; one that leaves carries on from the group's seq."""
    fanout = Fanout(history=10)
    a, b = Subscriber(), Subscriber()
    ticks = tick_stream("AAPL", [1.0 + i / 100 for i in range(6)], [100] * 6)
    fanout.ingest(ticks[:1])
    for sub in (a, b):
        fanout.subscribe(sub, "AAPL", 0.0)
        assert fanout.join(sub)
    group = a.group
    assert group is not None and b.group is group
    assert fanout.ingest(ticks[1:2]) == {group}, "a tick visits the group, not each member"
    assert [t.seq for t in frames_ticks(fanout.take_frames(group, T0))] == [2]
    assert fanout.delivered == 2, "one update counted per member"
    fanout.ingest(ticks[2:4])  # pending for the group, then a member is cut off
    assert fanout.leave(a) is True
    assert [t.seq for t in frames_ticks(fanout.take_frames(a, T0))] == [3, 4]
    assert a.group is None and b.group is group
    fanout.remove(b)
    assert fanout.groups == {}, "an empty group is dropped"


def test_lagging_or_mixed_rate_subscribers_do_not_join() -> None:
    """A subscriber with an update pending, or with symbols at different rates, rides alone."""
    fanout = Fanout(history=10)
    fanout.ingest(tick_stream("AAPL", [1.0, 1.01], [100, 100]))
    fanout.book("MSFT")
    mixed, lagging = Subscriber(), Subscriber()
    fanout.subscribe(mixed, "AAPL", 4.0)
    fanout.subscribe(mixed, "MSFT", 2.0)
    fanout.subscribe(lagging, "AAPL", 0.0, since=1)
    assert not fanout.join(mixed)
    assert not fanout.join(lagging)
    fanout.take_frames(lagging, T0)
    assert fanout.join(lagging)


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0.0, 0.3), st.sampled_from(["AAPL", "MSFT"]), st.booleans()),
        min_size=1,
        max_size=120,
    ),
    rate=st.sampled_from([50.0, 10.0, 4.0, 1.0]),
)
def test_a_throttled_group_member_gets_what_it_would_alone(
    steps: list[tuple[float, str, bool]], rate: float
) -> None:
    """Throttled subscribers of one rate ride one group once in step, and every member receives exactly the updates a lone subscriber of the same symbols receives."""
    fanout = Fanout(history=1000)
    members = [Subscriber(name="a"), Subscriber(name="b")]
    alone = Subscriber(name="alone")
    for sub in (*members, alone):
        for symbol in ("AAPL", "MSFT"):
            fanout.subscribe(sub, symbol, rate)
    got: dict[str, list[bytes]] = {"a": [], "b": [], "alone": []}
    now, seqs, volume = T0, {"AAPL": 0, "MSFT": 0}, 0

    def flush(dirty: set[Subscriber]) -> None:
        for sub in dirty | {s for s in (*members, alone) if s.ready}:
            frames = fanout.take_frames(sub, now)
            for member in sub.members if hasattr(sub, "members") else [sub]:
                got[member.name].extend(frames)

    for gap, symbol, regroup in steps:
        target = now + gap
        while (due := fanout.wheel.next_time()) is not None and due <= target:
            now = due
            flush(fanout.advance(now))
        now = target
        seqs[symbol] += 1
        volume += 100
        flush(fanout.ingest([make_tick(symbol, seqs[symbol], 100 + volume % 7, 100, volume, now)]))
        if regroup:
            for sub in members:
                fanout.join(sub)
    while (due := fanout.wheel.next_time()) is not None:
        now = due
        flush(fanout.advance(now))

    def updates(frames: list[bytes]) -> list[Tick]:
        return sorted(frames_ticks(frames), key=lambda t: (t.symbol, t.seq))

    assert updates(got["a"]) == updates(got["b"]) == updates(got["alone"])


def test_throttled_subscribers_in_step_share_one_group() -> None:
    """Two subscribers of the same symbols and rate join one group; a tick visits the group once, and the timer holds one entry per symbol for it."""
    fanout = Fanout(history=10)
    fanout.ingest(tick_stream("AAPL", [1.0], [100]))
    a, b = Subscriber(), Subscriber()
    for sub in (a, b):
        fanout.subscribe(sub, "AAPL", 4.0)
    assert fanout.join(a) and fanout.join(b)
    group = a.group
    assert group is not None and b.group is group
    [tick] = tick_stream("AAPL", [1.5], [100], first_seq=2, start=T0 + 0.1)
    assert fanout.ingest([tick]) == {group}
    assert [t.seq for t in frames_ticks(fanout.take_frames(group, T0 + 0.1))] == [2]
    assert len(fanout.wheel) == 1, "one wheel entry for the group's symbol"
    assert fanout.delivered == 2
    other = Subscriber()
    fanout.subscribe(other, "AAPL", 1.0)
    assert fanout.join(other) and other.group is not group, "another rate, another group"


def test_a_removed_subscriber_leaves_nothing_on_the_wheel() -> None:
    """Removing a waiting subscriber drops its timer entries at once, even at the slowest rate."""
    fanout = Fanout(history=10)
    fanout.book("AAPL")
    subs = [Subscriber() for _ in range(3)]
    for sub in subs:
        fanout.subscribe(sub, "AAPL", RATES[-1])
    fanout.ingest(tick_stream("AAPL", [1.0], [100]))
    for sub in subs:
        assert fanout.take_frames(sub, T0)
    assert len(fanout.wheel) == 3, "each waits a minute for its next window"
    for sub in subs:
        fanout.remove(sub)
    assert len(fanout.wheel) == 0


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 0.05), min_size=2, max_size=200),
    rate=st.sampled_from([0.0, 50.0, 20.0, 4.0]),
    stall=st.floats(0.05, 3.0),
)
def test_a_late_flush_still_sends_every_window_exactly(
    gaps: list[float], rate: float, stall: float
) -> None:
    """A flush that comes late (a busy server, not a full socket) sends one exact update per window it missed, and unthrottled every tick."""
    fanout = Fanout(history=10_000)
    sub = Subscriber()
    fanout.book("AAPL")
    fanout.subscribe(sub, "AAPL", rate)
    ts, volume, ticks = T0, 0, []
    for i, gap in enumerate(gaps):
        ts += gap
        volume += 100
        ticks.append(make_tick("AAPL", i + 1, 100 + i % 13 / 100, 100, volume, ts))
    fanout.ingest(ticks)
    got = frames_ticks(fanout.take_frames(sub, ticks[-1].ts + stall))
    while (due := fanout.wheel.next_time()) is not None:
        fanout.advance(due)
        got += frames_ticks(fanout.take_frames(sub, due))
    by_seq = {t.seq: t for t in ticks}
    previous = 0
    for update in got:
        covered = [by_seq[s] for s in range(previous + 1, update.seq + 1)]
        if rate == 0:
            assert len(covered) == 1, "unthrottled: every tick"
        else:
            window = window_micros(rate)
            assert len({ts_micros(t.ts) // window for t in covered}) == 1
        assert update.size == sum(t.size for t in covered)
        previous = update.seq
    assert previous == len(ticks)
