"""Price alerts: crossing detection on merged updates (pure) and a replay through throttling."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_desktop.alerts import Alert, AlertBook, check, condition_for
from ticker_server.conflation import Fanout, Subscriber
from ticker_server.market import Market, listings_for
from ticker_server.protocol import Tick, Ticks, decode_server_message

T0 = 1_764_000_000.0


def windows(prices: list[float], cuts: list[int]) -> list[tuple[float, float, float, int]]:
    """Merge consecutive prices into updates: (last, high, low, index of the last raw price)."""
    out, i, k = [], 0, 0
    while i < len(prices):
        n = cuts[k % len(cuts)]
        part = prices[i : i + n]
        out.append((part[-1], max(part), min(part), i + len(part) - 1))
        i, k = i + n, k + 1
    return out


def run(alert: Alert, updates: list[tuple[float, float, float, int]], chunk: int) -> Alert:
    """Feed updates ``chunk`` at a time (as frames arrive); ts of an update = its last raw index."""
    for j in range(0, len(updates), chunk):
        part = updates[j : j + chunk]
        cols = [np.array([u[c] for u in part], dtype=float) for c in range(4)]
        alert = check(alert, cols[0], cols[1], cols[2], cols[3])
    return alert


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(90, 110), min_size=2, max_size=80),
    st.integers(90, 110),
    st.lists(st.integers(1, 6), min_size=1, max_size=10),
    st.integers(1, 5),
)
def test_an_alert_fires_on_the_update_holding_the_first_crossing(
    raw: list[int], level: int, cuts: list[int], chunk: int
) -> None:
    """Made at the first price with its natural condition, an alert fires exactly on the merged
    update that holds the first raw trade reaching the level, whatever the merging, or never."""
    start, prices = float(raw[0]), [float(p) for p in raw[1:]]
    book = AlertBook()
    alert = book.add("X", float(level), 0.0, start)
    assert alert.condition == condition_for(level, start)
    if alert.condition == "above":
        first = next((i for i, p in enumerate(prices) if p >= level), None)
        armed = start < level
    else:
        first = next((i for i, p in enumerate(prices) if p <= level), None)
        armed = start > level
    after = run(alert, windows(prices, cuts), chunk)
    if not armed:
        # Created on the level: it waits for the price to leave it, then come back.
        return
    if first is None:
        assert after.triggered is None
    else:
        update = next(u for u in windows(prices, cuts) if u[3] >= first)
        assert after.triggered == update[3]
        assert after.price == update[0]


def test_an_alert_fires_once() -> None:
    """After it fired, later crossings leave the alert (and its trigger time) as it was."""
    book = AlertBook()
    book.add("X", 101.0, 0.0, 100.0)
    arr = np.array
    fired = book.check(
        "X", arr([100.5, 101.5]), arr([100.5, 101.5]), arr([100.5, 101.5]), arr([1.0, 2.0])
    )
    assert [a.triggered for a in fired] == [2.0]
    again = book.check(
        "X", arr([99.0, 102.0]), arr([99.0, 102.0]), arr([99.0, 102.0]), arr([3.0, 4.0])
    )
    assert again == []
    assert [a.triggered for a in book] == [2.0]


def test_a_merged_update_that_touches_the_level_fires() -> None:
    """A level touched only by the high of a conflated update (its last price below) fires."""
    book = AlertBook()
    book.add("X", 105.0, 0.0, 100.0)
    arr = np.array
    fired = book.check("X", arr([101.0]), arr([105.2]), arr([99.0]), arr([7.0]))
    assert [(a.triggered, a.price) for a in fired] == [(7.0, 101.0)]


def test_updates_from_before_the_alert_was_made_do_not_fire_it() -> None:
    """A snapshot's old trades through the level (a restart) are ignored; a later one fires."""
    book = AlertBook()
    book.add("X", 105.0, 1000.0, 100.0)
    arr = np.array
    old = book.check(
        "X", arr([106.0, 100.0]), arr([106.0, 100.0]), arr([100.0, 100.0]), arr([900.0, 990.0])
    )
    assert old == []
    fired = book.check("X", arr([105.5]), arr([105.5]), arr([105.5]), arr([999.0]))
    assert [a.triggered for a in fired] == [999.0], "within the clock slack it counts"


def test_saved_records_load_back_and_bad_ones_are_skipped() -> None:
    """Records round-trip (ids continue after the largest); malformed records are dropped."""
    book = AlertBook()
    book.add("X", 105.0, 10.0, 100.0)
    book.add("Y", 95.0, 11.0, 100.0)
    records = [
        *book.records(),
        {"id": "x"},
        {"id": 9, "symbol": "Z", "condition": "above", "level": -1, "created": 0},
    ]
    other = AlertBook()
    assert other.load(records) == 2
    assert list(other) == list(book)
    assert other.add("Z", 1.0, 0.0, 2.0).id == 3


def throttle(ticks: list[Tick], rate: float) -> list[Tick]:
    """What a subscriber at ``rate`` receives of ``ticks`` (each arriving at its ts), through the
    server's own conflation, flushed as soon as an update is ready."""
    fanout = Fanout(history=len(ticks) + 1)
    sub = Subscriber()
    fanout.book(ticks[0].symbol)
    fanout.subscribe(sub, ticks[0].symbol, rate)
    out: list[Tick] = []
    i = 0
    now = ticks[0].ts
    while True:
        if sub.ready:
            for frame in fanout.take_frames(sub, now):
                message = decode_server_message(frame)
                assert isinstance(message, Ticks)
                out.extend(message.ticks)
            continue
        due = fanout.wheel.next_time()
        arrival = ticks[i].ts if i < len(ticks) else None
        if due is None and arrival is None:
            return out
        if due is not None and (arrival is None or due <= arrival):
            now = due
            fanout.advance(now)
        elif arrival is not None:
            now = arrival
            fanout.ingest([ticks[i]])
            i += 1


def test_replayed_feed_through_throttling_misses_no_crossing() -> None:
    """A seeded market's feed of 6,000 ticks, conflated to 5 updates a second: alerts at levels
    across its range each fire on the update that holds their first crossing trade, 0 missed."""
    market = Market(
        listings_for(["AAPL"], seed=3), tick_rate=20.0, start=T0, rng=np.random.default_rng(5)
    )
    feed: list[Tick] = []
    t = T0
    while len(feed) < 6000:
        t += 0.05
        feed.extend(market.advance(t))
    received = throttle(feed, 5.0)
    assert sum(tick.covers for tick in received) == len(feed), "every trade covered once"
    assert len(received) < len(feed) / 2, "the replay really is merged"
    prices = np.array([tick.price for tick in feed])
    start = float(prices[0])
    levels = {round(float(x), 2) for x in np.linspace(prices.min(), prices.max(), 62)[1:-1]}
    book = AlertBook()
    for level in sorted(levels - {start}):  # one made on the level waits to leave it first
        book.add("AAPL", level, 0.0, start)
    # Frames of up to 3 updates, as the store hands them over.
    for j in range(0, len(received), 3):
        part = received[j : j + 3]
        col = {
            "price": np.array([u.price for u in part]),
            "high": np.array([u.high or u.price for u in part]),
            "low": np.array([u.low or u.price for u in part]),
            "ts": np.array([float(u.seq) for u in part]),
        }
        book.check("AAPL", col["price"], col["high"], col["low"], col["ts"])
    missed = wrong = inside = 0
    for alert in book:
        if alert.condition == "above":
            crossing = next((t for t in feed[1:] if t.price >= alert.level), None)
        else:
            crossing = next((t for t in feed[1:] if t.price <= alert.level), None)
        assert crossing is not None, "levels lie inside the feed's range"
        if alert.triggered is None:
            missed += 1
            continue
        # The update that fired is the one whose seq range holds the crossing trade.
        update = next(u for u in received if u.seq >= crossing.seq)
        wrong += alert.triggered != float(update.seq)
        inside += update.seq != crossing.seq
    assert (missed, wrong) == (0, 0)
    assert len(book) >= 40
    assert inside >= 10, "many first crossings lie inside a merged update, not at its last trade"
