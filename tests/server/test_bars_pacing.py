"""Long bars answers written a slice per loop turn: held requests, fairness, blocked clients,
and a tick client that keeps receiving while twenty clients page through a session."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from ticker_server.answer_queue import AnswerQueue
from ticker_server.bars import BarStore
from ticker_server.bars_answer import answer_bars
from ticker_server.delivery import Client
from ticker_server.protocol import BarsRequest, SymbolInfo, Tick
from ticker_server.session import CLOSE_POLICY, MAX_PIPELINED, MarketView, Session

from ..timing import MS
from .conftest import TIMEOUT, PeerFactory, ServerFactory

T0 = 1_000.0


def session(seconds: int = 3000) -> Session:
    """A session over one symbol with a tick every second for ``seconds`` seconds."""
    listings = {"AAPL": SymbolInfo(symbol="AAPL", name="AAPL", price=100.0)}
    store = BarStore(listings)
    store.ingest(
        [
            Tick(symbol="AAPL", seq=i + 1, ts=T0 + i, price=(10_000 + i % 97) / 100,
                 bid=1.0, ask=2.0, size=100, volume=100 * (i + 1))
            for i in range(seconds)
        ]
    )  # fmt: skip
    return Session(MarketView(listings, {}, 0.0, 10, 1000.0, 1000.0, store), T0, "test")


def bars(rid: int, limit: int = 3000) -> str:
    return json.dumps({"type": "bars", "symbol": "AAPL", "interval": 1, "limit": limit, "id": rid})


def test_requests_behind_an_answer_wait_for_it_then_are_answered_in_order() -> None:
    """While an answer is written, later requests are held (not answered out of order), then
    answered one by one; one past MAX_PIPELINED closes the client."""
    s = session()
    first = s.receive(bars(1), T0, (), False)
    assert first.frames == [] and first.answer is s.answering is not None
    for rid in (2, 3):
        assert s.receive(json.dumps({"type": "ping", "id": rid}), T0, (), False).frames == []
    assert s.resume(T0, ()) is None  # the answer comes first
    frames: list[bytes] = []
    while s.answering is not None:
        frames += s.pull()
    assert frames == answer_bars(s.market.bars, BarsRequest.model_validate_json(bars(1)))
    replies = []
    while (outcome := s.resume(T0, ())) is not None:
        replies += [json.loads(f)["id"] for f in outcome.frames]
    assert replies == [2, 3]
    s.receive(bars(4), T0, (), False)
    for rid in range(MAX_PIPELINED):
        assert s.receive(json.dumps({"type": "ping", "id": rid}), T0, (), False).close is None
    closing = s.receive(json.dumps({"type": "ping"}), T0, (), False)
    assert closing.close is not None and closing.close[0] == CLOSE_POLICY


def client(name: str, s: Session) -> Client:
    return Client(name=name, session=s)


async def test_clients_are_served_round_robin_and_a_blocked_one_waits() -> None:
    """Two equal answers go out interleaved frame by frame; a client that blocks gets nothing
    more until it is added back, and then exactly the rest of its answer."""
    written: list[tuple[str, bytes]] = []
    finished: list[str] = []
    a, b = client("a", session()), client("b", session())

    def write(c: Client, frame: bytes, at: float) -> None:
        written.append((c.name, frame))
        if c is b and len([n for n, _ in written if n == "b"]) == 2:
            b.blocked = True  # its buffer went above the limit with this frame

    done = asyncio.Event()
    queue = AnswerQueue(write, lambda c: (finished.append(c.name), done.set()), budget=0.0)
    for c in (a, b):
        assert c.session is not None
        c.session.receive(bars(1), T0, (), False)
        queue.add(c)
    async with asyncio.timeout(TIMEOUT):
        await done.wait()
    names = [n for n, _ in written]
    assert names[:4] == ["a", "b", "a", "b"] and names.count("b") == 2
    assert finished == ["a"] and len(queue) == 0
    b.blocked = False
    done.clear()
    queue.add(b)
    async with asyncio.timeout(TIMEOUT):
        await done.wait()
    expected = answer_bars(session().market.bars, BarsRequest.model_validate_json(bars(1)))
    for name in "ab":
        assert [f for n, f in written if n == name] == expected


@pytest.fixture
def server_defaults(server_defaults: dict[str, Any]) -> dict[str, Any]:
    """Three hours of history of two symbols: 10,800 one-second bars each."""
    return {**server_defaults, "symbols": ("AAPL", "MSFT"), "tick_rate": 100.0,
            "backfill": 3 * 3600.0, "history": 100}  # fmt: skip


async def test_a_tick_client_keeps_receiving_while_twenty_clients_page(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """Twenty clients paging back through every 1 s bar at once do not hold up another
    client's ticks: none arrives 50 ms after it was made (answered whole, the first pages alone take 80 ms)."""
    server = await make_server()
    watcher = await make_peer(server.url)
    await watcher.send(type="subscribe", symbols=["AAPL", "MSFT"], snapshot=0)
    await watcher.expect("subscribed")
    late: list[float] = []
    paging = False

    async def watch() -> None:
        while True:
            data = await watcher.ws.recv()
            now = time.time()
            message = json.loads(data)
            if message["type"] == "ticks" and paging:
                late.extend(now - tick["ts"] for tick in message["ticks"])

    watching = asyncio.create_task(watch())  # read all along: ticks must not wait on us
    pagers = [await make_peer(server.url) for _ in range(20)]

    async def page(i: int) -> int:
        ws, before, total = pagers[i].ws, None, 0
        for rid in range(10):
            request: dict[str, Any] = {"type": "bars", "symbol": ["AAPL", "MSFT"][i % 2],
                                       "interval": 1, "limit": 5000, "id": rid}  # fmt: skip
            if before is not None:
                request["before"] = before
            await ws.send(json.dumps(request))
            got, first = 0, None
            while True:  # bytes, not JSON: the test's own parsing must not hold the loop
                frame = await ws.recv(decode=False)
                if frame.startswith(b'{"type":"bars"'):
                    got += frame.count(b'{"t":')
                    first = first or int(frame.split(b'"t":', 1)[1].split(b",", 1)[0])
                    if frame.endswith(b'"done":true}'):
                        break
            total += got
            if got < 5000 or first is None:
                return total
            before = first
        return total

    paging = True
    async with asyncio.timeout(20 * TIMEOUT):
        totals = await asyncio.gather(*(page(i) for i in range(20)))
    paging = False
    watching.cancel()
    await asyncio.gather(watching, return_exceptions=True)
    assert min(totals) > 10_000  # every pager read the whole session
    assert len(late) > 10
    assert max(late) < 50 * MS, sorted(late)[-5:]
