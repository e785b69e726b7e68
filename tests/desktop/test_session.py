"""The pure client session, fed recorded server frames with no socket (as websockets tests its protocol).

``recorded/session.jsonl`` is a real session against ticker_server (``record_session.py``
rewrites it): hello, subscribed, snapshots, live ticks with merged ones, an unknown
symbol's error, heartbeats, a resume on the same server and a reconnect to a restarted
one with a new epoch. Each frame is replayed at the wall time it arrived, and every
request the session asks to send is compared with the one that was actually sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ticker_desktop.events import (
    ClientEvent,
    HelloReceived,
    InputRejected,
    LatencyMeasured,
    ServerError,
    SubscriptionChanged,
    SymbolsListed,
    TicksReceived,
)
from ticker_desktop.options import ClientOptions
from ticker_desktop.session import ClientSession, ProtocolMismatch
from ticker_desktop.watched import WatchedSymbols

RECORDING = Path(__file__).with_name("recorded") / "session.jsonl"
OPTIONS = ClientOptions(max_rate=2.0, snapshot=3)
"""What the recording's client asked for: 2 updates a second, 3 ticks of history."""


@dataclass(frozen=True)
class Frame:
    conn: int
    dir: str
    wall: float
    frame: str

    @property
    def message(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.frame)
        return decoded


def recording() -> list[Frame]:
    return [Frame(**json.loads(line)) for line in RECORDING.read_text().splitlines()]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Replay:
    """What the session did with the recording, per connection."""

    session: ClientSession
    events: dict[int, list[ClientEvent]]
    asked: dict[int, list[dict[str, Any]]]
    """Requests the session asked to send, decoded."""
    sent: dict[int, list[dict[str, Any]]]
    """Requests the recorded client sent."""
    last_seq: dict[int, dict[str, int | None]]
    """The seqs the session held for AAPL and MSFT when each connection ended."""


def replay(frames: list[Frame]) -> Replay:
    """Feed ``frames`` through a fresh session watching AAPL and MSFT."""
    clock = Clock(frames[0].wall)
    session = ClientSession(OPTIONS, WatchedSymbols(["AAPL", "MSFT"]), clock, clock)
    result = Replay(session, {}, {}, {}, {})
    conn = 0
    for frame in frames:
        clock.now = frame.wall
        if frame.conn != conn:
            if conn:
                session.closed()
                result.last_seq[conn] = {s: session.last_seq(s) for s in ("AAPL", "MSFT")}
            conn = frame.conn
            session.open(frame.frame)
        elif frame.dir == "out":
            message = frame.message
            result.sent.setdefault(conn, []).append(message)
            if message["id"] != result.asked.get(conn, [{}])[0].get("id"):
                session.subscribe(message["symbols"])  # what the user did at that moment
        else:
            session.receive(frame.frame)
        asked = [json.loads(text) for text in session.data_to_send()]
        result.asked.setdefault(conn, []).extend(asked)
        result.events.setdefault(conn, []).extend(session.events_received())
    session.closed()
    result.last_seq[conn] = {s: session.last_seq(s) for s in ("AAPL", "MSFT")}
    return result


def ticks_of(events: list[ClientEvent], snapshot: str | None) -> list[TicksReceived]:
    return [e for e in events if isinstance(e, TicksReceived) and e.snapshot == snapshot]


@pytest.fixture(scope="module")
def replayed() -> Replay:
    return replay(recording())


def test_requests_asked_are_the_ones_the_recorded_client_sent(replayed: Replay) -> None:
    """Subscribe on connect, the user's later subscribe, resume with since, a fresh ask after a new epoch."""
    assert replayed.asked == replayed.sent
    first, resumed, restarted = (replayed.asked[c][0] for c in (1, 2, 3))
    assert "since" not in first and "since" not in restarted
    assert resumed["since"] == replayed.last_seq[1]


def test_first_connection_gives_snapshot_live_merged_ticks_and_the_refusal(
    replayed: Replay,
) -> None:
    """Hello, the subscription, 3-tick snapshots, live ticks with merged ones, and the unknown symbol refused."""
    events = replayed.events[1]
    hello = events[0]
    assert isinstance(hello, HelloReceived) and not hello.epoch_changed
    changed = [e.symbols for e in events if isinstance(e, SubscriptionChanged)]
    assert changed == [["AAPL", "MSFT"], ["AAPL", "MSFT"]], "the answers to both subscribes"
    for symbol in ("AAPL", "MSFT"):
        (snapshot,) = ticks_of(events, symbol)
        assert len(snapshot.ticks) == 3 and {t.symbol for t in snapshot.ticks} == {symbol}
    live = [t for e in ticks_of(events, None) for t in e.ticks]
    assert any(t.merged is not None and t.merged > 1 for t in live)
    (error,) = [e for e in events if isinstance(e, ServerError)]
    assert (error.error.code, error.request, error.dropped) == (
        "unknown_symbol",
        "subscribe",
        ["NOPE"],
    )
    assert replayed.session.watched.symbols == ["AAPL", "MSFT"]


def test_every_tick_of_an_honest_server_passes_once_and_in_order(replayed: Replay) -> None:
    """No rejection, no repeat: each connection's ticks run on from the seq held before it."""
    assert not [e for c in replayed.events.values() for e in c if isinstance(e, InputRejected)]
    assert replayed.session.repeats == 0
    for conn in (1, 2):
        for symbol in ("AAPL", "MSFT"):
            seqs = [t.seq for e in replayed.events[conn] if isinstance(e, TicksReceived)
                    for t in e.ticks if t.symbol == symbol]  # fmt: skip
            assert seqs == sorted(set(seqs)) and seqs[-1] == replayed.last_seq[conn][symbol]


def test_resume_on_the_same_epoch_continues_where_the_last_connection_stopped(
    replayed: Replay,
) -> None:
    """The resume's snapshot starts right after the seq held (a merged tick covers the skipped ones)."""
    events = replayed.events[2]
    hello = events[0]
    assert isinstance(hello, HelloReceived) and not hello.epoch_changed
    for symbol in ("AAPL", "MSFT"):
        (snapshot,) = ticks_of(events, symbol)
        first = snapshot.ticks[0]
        assert first.seq - first.covers == replayed.last_seq[1][symbol]


def test_new_epoch_forgets_the_seqs_held_and_lets_the_new_feed_in(replayed: Replay) -> None:
    """After a server restart the hello says so, and the new feed's lower seqs are believed."""
    events = replayed.events[3]
    hello = events[0]
    assert isinstance(hello, HelloReceived) and hello.epoch_changed
    restarted = [t for e in events if isinstance(e, TicksReceived) for t in e.ticks]
    aapl = [t.seq for t in restarted if t.symbol == "AAPL"]
    assert aapl and max(aapl) < (replayed.last_seq[2]["AAPL"] or 0)
    assert replayed.last_seq[3]["AAPL"] == aapl[-1]


def test_a_repeated_frame_is_dropped_by_the_one_seq_guard() -> None:
    """A ticks frame delivered twice gives its ticks once; the repeat is counted as seq_old."""
    frames = [f for f in recording() if f.conn == 1]
    index = next(i for i, f in enumerate(frames) if f.dir == "in" and '"ticks"' in f.frame[:20])
    result = replay([*frames[: index + 1], frames[index], *frames[index + 1 :]])
    twice = frames[index].frame
    delivered = [e for e in result.events[1] if isinstance(e, TicksReceived) and e.snapshot is None]
    assert [e.ticks for e in delivered].count(delivered[0].ticks) == 1, twice
    assert result.session.repeats == len(json.loads(twice)["ticks"])
    rejected = [e for e in result.events[1] if isinstance(e, InputRejected)]
    assert [e.reason for e in rejected] == ["seq_old"]


def live_session() -> tuple[ClientSession, Clock]:
    """A session past the recorded first hello, its subscribe taken."""
    frames = recording()
    clock = Clock(frames[0].wall)
    session = ClientSession(OPTIONS, WatchedSymbols(["AAPL"]), clock, clock)
    session.open(frames[0].frame)
    session.data_to_send()
    session.events_received()
    return session, clock


def test_watched_set_edited_elsewhere_is_unsubscribed_and_forgotten() -> None:
    """Removing a symbol from the shared set (say, from the watchlist) unsubscribes it and drops its seq."""
    session, clock = live_session()
    session.receive(json.dumps({"type": "ticks", "ticks": [aapl_tick(clock.now, 7)]}))
    assert session.last_seq("AAPL") == 7
    session.watched.remove(["AAPL"])
    (asked,) = [json.loads(t) for t in session.data_to_send()]
    assert asked["type"] == "unsubscribe" and asked["symbols"] == ["AAPL"]
    assert session.pending[asked["id"]] == "unsubscribe"
    assert session.last_seq("AAPL") is None


def test_nothing_is_asked_while_offline_and_all_is_asked_on_connect() -> None:
    """Offline edits only change the set; the next hello asks for the whole set in one subscribe."""
    frames = recording()
    clock = Clock(frames[0].wall)
    session = ClientSession(OPTIONS, WatchedSymbols(), clock, clock)
    session.subscribe(["aapl", " msft ", ""])
    session.unsubscribe(["AAPL"])
    session.subscribe(["NVDA"])
    assert session.data_to_send() == []
    session.open(frames[0].frame)
    (asked,) = [json.loads(t) for t in session.data_to_send()]
    assert asked["symbols"] == ["MSFT", "NVDA"] and asked["max_rate"] == 2.0


def test_list_symbols_is_answered_by_id_and_forgotten_when_the_connection_ends() -> None:
    """A reply carries the request's id; a request left when the connection ends is not awaited."""
    session, _ = live_session()
    rid = session.list_symbols()
    info = {"symbol": "AAPL", "name": "Apple", "price": 200.0}
    session.receive(json.dumps({"type": "symbols", "symbols": [info], "id": rid}))
    (answer,) = session.answers_received()
    assert answer.id == rid and answer.message is not None and answer.error is None
    assert isinstance(session.events_received()[-1], SymbolsListed)
    again = session.list_symbols()
    assert again in session.pending
    session.closed()
    assert session.pending == {} and session.data_to_send() == []
    with pytest.raises(ConnectionError):
        session.list_symbols()


def test_pong_measures_the_round_trip_on_the_injected_clock() -> None:
    """A ping at t and its pong at t + 0.25 s give an RTT of 0.25 s."""
    session, clock = live_session()
    session.ping()
    (ping,) = [json.loads(t) for t in session.data_to_send()]
    clock.now += 0.25
    session.receive(json.dumps({"type": "pong", "id": ping["id"], "ts": clock.now}))
    (measured,) = [e for e in session.events_received() if isinstance(e, LatencyMeasured)]
    assert measured.rtt == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ('{"type":"heartbeat","ts":1.0}', "not a hello"),
        ("not json", "not a hello"),
        ("HELLO_V2", "protocol 2"),
        ("HELLO_NO_HEARTBEAT", "heartbeat"),
    ],
)
def test_a_first_frame_that_is_not_a_v1_hello_is_refused(first: str, why: str) -> None:
    """The session will not go live on anything but a believable protocol v1 hello."""
    hello = recording()[0].message
    if first == "HELLO_V2":
        first = json.dumps({**hello, "protocol": 2})
    elif first == "HELLO_NO_HEARTBEAT":
        first = json.dumps({**hello, "heartbeat": -1})
    session = ClientSession(OPTIONS, WatchedSymbols(["AAPL"]))
    with pytest.raises(ProtocolMismatch, match=why):
        session.open(first)
    assert not session.live and session.data_to_send() == []


def aapl_tick(now: float, seq: int) -> dict[str, Any]:
    return {"symbol": "AAPL", "seq": seq, "ts": now, "price": 200.0, "bid": 199.9, "ask": 200.1,
            "size": 1, "volume": seq}  # fmt: skip


def test_the_session_loads_no_io_or_qt_layer() -> None:
    """session, watched and export import neither asyncio, websockets, ssl nor Qt: they stay pure."""
    layers = ("asyncio", "websockets", "ssl", "PySide6", "qasync")
    code = (
        "import sys, ticker_desktop.session, ticker_desktop.watched, ticker_desktop.export\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({layers!r})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
