"""The pure session: recorded client requests replayed without a socket or an event loop."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_server.bars import BarStore
from ticker_server.conflation import Fanout, Subscriber
from ticker_server.protocol import MAX_FRAME, SymbolInfo, Tick
from ticker_server.session import (
    ABUSE_LIMIT,
    CLOSE_POLICY,
    MAX_DEFERRED,
    MarketView,
    Outcome,
    Session,
)

T0 = 1_764_000_000.0
SYMBOLS = ("AAPL", "MSFT", "NVDA")


def market(history: int = 50, ticks: int = 20, max_symbols: int = 2, cap: float = 0.0) -> Fanout:
    """A fan-out whose books hold ``ticks`` ticks of each symbol (seq 1..ticks)."""
    fanout = Fanout(history)
    for symbol in SYMBOLS:
        fanout.book(symbol)
    fanout.ingest(
        [
            Tick(symbol=s, seq=i, ts=T0 + i, price=100.0 + i, bid=99.0 + i, ask=101.0 + i,
                 size=1, volume=i)
            for i in range(1, ticks + 1)
            for s in SYMBOLS
        ]
    )  # fmt: skip
    return fanout


def view(
    fanout: Fanout, max_symbols: int = 2, rate: float = 10.0, burst: float = 5.0
) -> MarketView:
    listings = {s: SymbolInfo(symbol=s, name=s, price=100.0) for s in SYMBOLS}
    return MarketView(listings, fanout.books, 0.0, max_symbols, rate, burst, BarStore(listings))


class Replay:
    """Feeds recorded requests to a session and applies its outcomes to a real fan-out."""

    def __init__(self, fanout: Fanout, **limits: Any) -> None:
        self.fanout = fanout
        self.session = Session(view(fanout, **limits), T0, "test")
        self.client = Subscriber(name="test")
        self.blocked = False

    def apply(self, outcome: Outcome) -> list[dict[str, Any]]:
        for symbol in outcome.subscribe:
            self.fanout.subscribe(self.client, symbol, outcome.rate)
        for symbol in outcome.unsubscribe:
            self.fanout.unsubscribe(self.client, symbol)
        return [json.loads(frame) for frame in outcome.frames]

    def send(self, request: str | bytes | dict[str, Any], now: float = T0) -> list[dict[str, Any]]:
        raw = json.dumps(request) if isinstance(request, dict) else request
        self.last = self.session.receive(raw, now, self.client.symbols, self.blocked)
        return self.apply(self.last)


def types(replies: list[dict[str, Any]]) -> list[str]:
    return [reply["type"] for reply in replies]


def test_recorded_dashboard_session() -> None:
    """A desktop's recorded opening: subscribe with snapshot, list, ping, unsubscribe: each reply as the protocol says."""
    replay = Replay(market())
    replies = replay.send(
        {"type": "subscribe", "symbols": ["aapl", "MSFT"], "snapshot": 5, "id": 1}
    )
    assert types(replies) == ["subscribed", "snapshot", "snapshot"]
    assert replies[0] == {
        "type": "subscribed",
        "symbols": ["AAPL", "MSFT"],
        "id": 1,
        "max_rate": 0.0,
    }
    assert [t["seq"] for t in replies[1]["ticks"]] == [16, 17, 18, 19, 20]
    assert list(replay.client.symbols) == ["AAPL", "MSFT"]
    listed = replay.send({"type": "list_symbols", "id": "l"})
    assert listed[0]["id"] == "l"
    assert [s["price"] for s in listed[0]["symbols"]] == [
        120.0,
        120.0,
        120.0,
    ]  # latest, not listing
    assert replay.send({"type": "ping", "id": 7}, now=T0 + 3) == [
        {"type": "pong", "ts": T0 + 3, "id": 7}
    ]
    replies = replay.send({"type": "unsubscribe", "symbols": ["AAPL", "ZZZ"], "id": 2})
    assert types(replies) == ["error", "unsubscribed"]
    assert replies[0]["code"] == "unknown_symbol" and replies[0]["symbols"] == ["ZZZ"]
    assert replies[1]["symbols"] == ["MSFT"] and list(replay.client.symbols) == ["MSFT"]
    assert replay.last.errors == ["unknown_symbol"]


def test_recorded_reconnect_resumes_with_exactly_the_gap() -> None:
    """A reconnecting client's since: {sym: 17} gets ticks 18..20 and no snapshot of the rest."""
    replay = Replay(market())
    replies = replay.send({"type": "subscribe", "symbols": ["NVDA"], "since": {"NVDA": 17},
                           "snapshot": 10})  # fmt: skip
    assert types(replies) == ["subscribed", "snapshot"]
    assert [t["seq"] for t in replies[1]["ticks"]] == [18, 19, 20]


def test_resume_beyond_history_falls_back_to_the_snapshot() -> None:
    """A since older than the history held gets the asked snapshot instead of a gap with holes."""
    replay = Replay(market(history=5, ticks=20))
    replies = replay.send({"type": "subscribe", "symbols": ["NVDA"], "since": {"NVDA": 2},
                           "snapshot": 3})  # fmt: skip
    assert [t["seq"] for t in replies[1]["ticks"]] == [18, 19, 20]


def test_too_many_symbols_changes_nothing() -> None:
    """Asking past max_symbols is refused whole: no subscription, one error with the request's id."""
    replay = Replay(market(), max_symbols=2)
    replay.send({"type": "subscribe", "symbols": ["AAPL"]})
    replies = replay.send({"type": "subscribe", "symbols": ["MSFT", "NVDA"], "id": 9})
    assert types(replies) == ["error"] and replies[0]["code"] == "too_many_symbols"
    assert replies[0]["id"] == 9
    assert list(replay.client.symbols) == ["AAPL"]
    assert not replay.last.subscribe


def test_resubscribing_a_held_symbol_changes_its_rate_without_a_snapshot() -> None:
    """A held symbol asked again keeps its place and gets no second snapshot."""
    replay = Replay(market())
    replay.send({"type": "subscribe", "symbols": ["AAPL"], "snapshot": 2})
    replies = replay.send({"type": "subscribe", "symbols": ["AAPL", "MSFT"], "snapshot": 2,
                           "max_rate": 1})  # fmt: skip
    assert types(replies) == ["subscribed", "snapshot"]
    assert replies[1]["symbol"] == "MSFT"
    assert replies[0]["symbols"] == ["AAPL", "MSFT"] and replies[0]["max_rate"] == 1.0


def test_bad_input_gets_errors_never_exceptions() -> None:
    """Binary, broken JSON, unknown types and bad fields each get one error and change nothing."""
    replay = Replay(market())
    cases: list[tuple[str | bytes, str]] = [
        (b"\x00\x01", "bad_request"),
        ("{not json", "bad_request"),
        ('{"type": "teleport", "id": 3}', "unknown_type"),
        ('{"type": "subscribe", "symbols": []}', "bad_request"),
    ]
    for raw, code in cases:
        replies = replay.send(raw)
        assert types(replies) == ["error"] and replies[0]["code"] == code, raw
    assert not replay.client.symbols


def test_a_burst_past_the_bucket_is_rate_limited_then_recovers() -> None:
    """Past the burst a request is refused with rate_limited; a second later there is room again."""
    replay = Replay(market(), rate=1.0, burst=3.0)
    for _ in range(3):
        assert types(replay.send({"type": "ping"})) == ["pong"]
    assert replay.send({"type": "ping"})[0]["code"] == "rate_limited"
    assert types(replay.send({"type": "ping"}, now=T0 + 1.0)) == ["pong"]


def test_sustained_abuse_is_closed_with_1008() -> None:
    """ABUSE_LIMIT refused requests in a row ask for a 1008 close, and not one before."""
    replay = Replay(market(), rate=1.0, burst=1.0)
    replay.send({"type": "ping"})
    for _ in range(ABUSE_LIMIT - 1):
        replay.send({"type": "ping"})
        assert replay.last.close is None
    replay.send({"type": "ping"})
    assert replay.last.close is not None and replay.last.close[0] == CLOSE_POLICY


def test_requests_while_blocked_wait_then_are_answered_in_order() -> None:
    """A blocked client's requests get no reply until it drains, then each in order; one past MAX_DEFERRED closes it."""
    replay = Replay(market(), rate=1000.0, burst=1000.0)
    replay.blocked = True
    for rid in range(MAX_DEFERRED):
        assert replay.send({"type": "ping", "id": rid}) == []
    replay.blocked = False
    answered = []
    while (outcome := replay.session.resume(T0, replay.client.symbols)) is not None:
        answered += [reply["id"] for reply in replay.apply(outcome)]
    assert answered == list(range(MAX_DEFERRED))
    replay.blocked = True
    for rid in range(MAX_DEFERRED):
        replay.send({"type": "ping", "id": rid})
    replay.send({"type": "ping"})
    assert replay.last.close is not None and replay.last.close[0] == CLOSE_POLICY


def test_a_long_history_is_split_into_frames_within_max_frame() -> None:
    """A snapshot bigger than MAX_FRAME goes out as several snapshot frames, each within it, none lost."""
    replay = Replay(market(history=2000, ticks=2000))
    replies = replay.send({"type": "subscribe", "symbols": ["AAPL"], "snapshot": 2000})
    frames = replay.last.frames[1:]
    assert len(frames) > 1 and all(len(frame) <= MAX_FRAME for frame in frames)
    assert [t["seq"] for r in replies[1:] for t in r["ticks"]] == list(range(1, 2001))


requests = st.one_of(
    st.builds(lambda s, n, r: {"type": "subscribe", "symbols": s, "snapshot": n, "max_rate": r},
              st.lists(st.sampled_from([*SYMBOLS, "aapl", "NOPE"]), min_size=1, max_size=4),
              st.integers(0, 30), st.sampled_from([None, 1, 2, 50])),
    st.builds(lambda s: {"type": "unsubscribe", "symbols": s},
              st.lists(st.sampled_from([*SYMBOLS, "NOPE"]), min_size=1, max_size=4)),
    st.just({"type": "ping"}),
    st.just({"type": "list_symbols"}),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(requests, max_size=25))
def test_any_request_sequence_keeps_the_reply_in_step_with_the_subscriptions(
    sequence: list[dict[str, Any]],
) -> None:
    """Whatever the sequence, every (un)subscribed reply lists exactly what the fan-out holds, within max_symbols."""
    replay = Replay(market(), max_symbols=2, rate=1e6, burst=1e6)
    for request in sequence:
        for reply in replay.send(request):
            assert reply["type"] != "error" or reply["code"] in {
                "unknown_symbol",
                "too_many_symbols",
            }
            if reply["type"] in ("subscribed", "unsubscribed"):
                assert reply["symbols"] == list(replay.client.symbols)
        assert len(replay.client.symbols) <= 2
