"""Bars over the wire from a real server: exact against every tick, paged, split, and live."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import pytest

from ticker_server.app import TickerServer
from ticker_server.backfill import backfill_rng, generate
from ticker_server.market import listings_for
from ticker_server.protocol import (
    BAR_INTERVALS,
    MAX_FRAME,
    Bar,
    Bars,
    BarUpdate,
    Snapshot,
    Tick,
    Ticks,
    decode_server_message,
    ts_micros,
)

from .conftest import TIMEOUT, Peer, PeerFactory, ServerFactory

SYMBOLS = ("AAPL", "MSFT")
BACKFILL = 1200.0
Row = tuple[int, float, float, float, float, int, int]


@pytest.fixture
def server_defaults(server_defaults: dict[str, Any]) -> dict[str, Any]:
    """Twenty minutes of history at 10 ticks/s, all of it kept as tick history too."""
    return {
        **server_defaults,
        "symbols": SYMBOLS,
        "tick_rate": 10.0,
        "backfill": BACKFILL,
        "history": 50_000,
    }


def aggregate(ticks: Sequence[tuple[int, float, int]], interval: int) -> list[Row]:
    """(ts in µs, price, size) in order -> bars, the obvious way."""
    bars: dict[int, list[Any]] = {}
    for t_us, price, size in ticks:
        t = t_us // (interval * 1_000_000) * interval
        bar = bars.get(t)
        if bar is None:
            bars[t] = [t, price, price, price, price, size, 1]
        else:
            bar[2], bar[3] = max(bar[2], price), min(bar[3], price)
            bar[4], bar[5], bar[6] = price, bar[5] + size, bar[6] + 1
    return [tuple(b) for _, b in sorted(bars.items())]


def prefixes(ticks: Sequence[tuple[int, float, int]], interval: int) -> list[Row]:
    """The bar after each of a window's ticks: what a forming bar may show."""
    out: list[Row] = []
    bar: list[Any] = []
    for t_us, price, size in ticks:
        if not bar:
            bar = [t_us // (interval * 1_000_000) * interval, price, price, price, price, size, 1]
        else:
            bar[2], bar[3] = max(bar[2], price), min(bar[3], price)
            bar[4], bar[5], bar[6] = price, bar[5] + size, bar[6] + 1
        out.append(tuple(bar))
    return out


def row(bar: Bar) -> Row:
    return (bar.t, bar.o, bar.h, bar.l, bar.c, bar.v, bar.n)


async def fetch(
    peer: Peer,
    raw: list[bytes] | None = None,
    other: Callable[[Any], None] | None = None,
    **request: Any,
) -> list[Bar]:
    """Send one bars request and gather its frames until done; other messages go to ``other``."""
    rid = request.setdefault("id", f"r{id(request)}")
    await peer.send(type="bars", **request)
    bars: list[Bar] = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            data = await peer.ws.recv(decode=False)
            if raw is not None and b'"type":"bars"' in data:
                raw.append(data)
            message = decode_server_message(data)
            if isinstance(message, Bars) and message.id == rid:
                bars += message.bars
                if message.done:
                    return bars
            elif other is not None:
                other(message)


async def test_bars_equal_the_aggregation_of_backfill_and_live_ticks(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """Every bar at every interval equals the regenerated backfill plus the live ticks."""
    server: TickerServer = await make_server()
    assert server.feed is not None
    start = server.feed.market.start
    backfill = generate(
        listings_for(SYMBOLS, 7),
        tick_rate=10.0,
        duration=BACKFILL,
        end=start,
        rng=backfill_rng(7),
    )
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=list(SYMBOLS), snapshot=50_000)
    ticks: dict[str, list[Tick]] = {s: [] for s in SYMBOLS}

    def take(message: Any) -> None:
        if isinstance(message, Snapshot | Ticks):
            for tick in message.ticks:
                ticks[tick.symbol].append(tick)

    async with asyncio.timeout(TIMEOUT * 4):
        while min((t[-1].ts if t else 0.0) for t in ticks.values()) < start + 1.5:
            take(await peer.recv())
    answers = {
        (s, i): await fetch(peer, other=take, symbol=s, interval=i, limit=5000)
        for s in SYMBOLS
        for i in BAR_INTERVALS
    }
    # Ticks the store took before answering may still be on their way: read a while longer.
    answered = server.clock()
    async with asyncio.timeout(TIMEOUT):
        while min(t[-1].ts for t in ticks.values()) < answered + 0.3:
            take(await peer.recv())
    for symbol in SYMBOLS:
        h = backfill.symbols[symbol]
        got = ticks[symbol]
        assert [t.seq for t in got] == list(range(1, len(got) + 1)), "seqs are contiguous"
        assert got[h.count - 1].ts < start <= got[h.count].ts, "history ends before live starts"
        assert all(a.ts <= b.ts for a, b in pairwise(got)), "one batch shares a ts"
        assert [round(t.price * 100) for t in got[: h.count]] == h.cents.tolist()
        feed = [
            (t_us, c / 100, s)
            for t_us, c, s in zip(h.t_us.tolist(), h.cents.tolist(), h.sizes.tolist(), strict=True)
        ] + [(ts_micros(t.ts), t.price, t.size) for t in got[h.count :]]
        for interval in BAR_INTERVALS:
            served = answers[(symbol, interval)]
            expected = aggregate(feed, interval)
            complete = [row(b) for b in served if not b.partial]
            assert complete == expected[: len(complete)], (symbol, interval)
            assert len(served) - len(complete) <= 1 and all(not b.partial for b in served[:-1])
            last = served[-1]
            if last.partial:
                # The forming bar holds a prefix of its window's ticks (some may have come since).
                window = [x for x in feed if x[0] // (interval * 1_000_000) * interval == last.t]
                assert row(last) in prefixes(window, interval), (symbol, interval)


async def test_pages_go_back_with_before_and_frames_stay_within_64_kib(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """1,000 one-second bars come in several frames under MAX_FRAME; before pages back."""
    server = await make_server()
    peer = await make_peer(server.url)
    raw: list[bytes] = []
    newest = await fetch(peer, raw, symbol="aapl", interval=1, limit=1000)
    assert len(newest) == 1000 and len(raw) >= 2
    assert all(len(frame) <= MAX_FRAME for frame in raw)
    assert [b'"done":true' in frame for frame in raw] == [False] * (len(raw) - 1) + [True]
    times = [b.t for b in newest]
    assert times == sorted(set(times))
    older = await fetch(peer, symbol="AAPL", interval=1, limit=100, before=times[0])
    assert len(older) == 100 and older[-1].t < times[0]
    assert not any(b.partial for b in older)
    again = await fetch(peer, symbol="AAPL", interval=1, limit=50, before=times[100])
    assert [row(b) for b in again] == [row(b) for b in newest[50:100]]
    nothing = await fetch(peer, symbol="AAPL", interval=60, limit=10, before=0)
    assert nothing == []


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"symbol": "ZZZZ", "interval": 60}, "unknown_symbol"),
        ({"symbol": "AAPL", "interval": 7}, "bad_request"),
        ({"symbol": "AAPL", "interval": 60, "limit": 0}, "bad_request"),
        ({"symbol": "AAPL", "interval": 60, "limit": 5001}, "bad_request"),
        ({"symbol": "AAPL", "interval": "60"}, "bad_request"),
    ],
)
async def test_bad_bars_requests_get_the_usual_errors(
    make_server: ServerFactory, make_peer: PeerFactory, request_: dict[str, Any], code: str
) -> None:
    """Unknown symbol, unsupported interval and bad limits are refused with their id."""
    server = await make_server(backfill=0.0)
    peer = await make_peer(server.url)
    await peer.send(type="bars", id=9, **request_)
    error = await peer.expect("error")
    assert (error.code, error.id) == (code, 9)


async def test_live_bars_partial_at_the_granted_rate_then_final(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """Subscribed with bars [1]: partial bars at most 2/s, and each closed bar once, exact."""
    server = await make_server(backfill=30.0)
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=["AAPL"], bars=[1, 5], max_rate=2)
    updates: list[tuple[float, BarUpdate]] = []
    async with asyncio.timeout(TIMEOUT * 3):
        while sum(1 for _, u in updates if not u.partial and u.interval == 5) < 2:
            message = await peer.recv()
            if isinstance(message, BarUpdate):
                updates.append((server.clock(), message))
    finals = [u for _, u in updates if not u.partial and u.interval == 1]
    assert len(finals) >= 4
    assert len({u.bar.t for u in finals}) == len(finals), "each bar closes once"
    partial_times = [at for at, u in updates if u.partial and u.interval == 1]
    per_window: dict[int, int] = {}
    for at in partial_times:
        per_window[int(at * 2)] = per_window.get(int(at * 2), 0) + 1
    assert max(per_window.values()) <= 2  # one per half second, give or take the boundary
    served = {b.t: row(b) for b in await fetch(peer, symbol="AAPL", interval=1, limit=100)}
    for update in finals:
        assert row(update.bar) == served[update.bar.t]
    for _, update in updates:
        assert update.symbol == "AAPL" and bool(update.bar.partial) == update.partial
