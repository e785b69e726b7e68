"""The shared message models: round-trips, strict request validation, and the hot-path tick encoder."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from ticker_server.bars_answer import encode_bar_update
from ticker_server.protocol import (
    SERVER_TYPES,
    Error,
    Heartbeat,
    Hello,
    ListSymbols,
    Ping,
    Pong,
    ProtocolError,
    Snapshot,
    Subscribe,
    Subscribed,
    SymbolInfo,
    Symbols,
    Tick,
    Ticks,
    Unsubscribe,
    Unsubscribed,
    decode_request,
    decode_server_message,
    encode,
    encode_tick,
    json_schema,
)

TICK = Tick(
    symbol="AAPL",
    seq=1234,
    ts=1764130000.123456,
    price=187.42,
    bid=187.41,
    ask=187.43,
    size=300,
    volume=1843200,
)

SERVER_MESSAGES = [
    Hello(symbols=["AAPL", "MSFT"], max_rate=50, heartbeat=5, epoch="e1"),
    Subscribed(symbols=["AAPL"], id="a"),
    Unsubscribed(symbols=[], id=3),
    Snapshot(symbol="AAPL", ticks=[TICK]),
    Ticks(
        ticks=[
            TICK,
            TICK.model_copy(update={"seq": 1240, "merged": 6, "high": 188.0, "low": 187.0}),
        ]
    ),
    Symbols(symbols=[SymbolInfo(symbol="AAPL", name="Apple Inc.", price=187.42)]),
    Pong(ts=1.5, id=None),
    Heartbeat(ts=2.5),
    Error(code="unknown_symbol", message="symbols: unknown symbol(s) 'X'", id=7, symbols=["X"]),
]


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=lambda m: m.type)
def test_server_messages_round_trip(message: object) -> None:
    """Every server message encodes to JSON with its type and decodes back equal."""
    data = encode(message)  # type: ignore[arg-type]
    assert json.loads(data)["type"] == message.type  # type: ignore[attr-defined]
    assert decode_server_message(data) == message


@pytest.mark.parametrize(
    "request_model",
    [
        Subscribe(
            type="subscribe", symbols=["AAPL"], max_rate=4, snapshot=200, since={"AAPL": 5}, id=1
        ),
        Unsubscribe(type="unsubscribe", symbols=["AAPL"], id="x"),
        ListSymbols(type="list_symbols"),
        Ping(type="ping", id=9),
    ],
    ids=lambda m: m.type,
)
def test_client_requests_round_trip(request_model: object) -> None:
    """Every client request encodes and decodes back equal."""
    assert decode_request(encode(request_model)) == request_model  # type: ignore[arg-type]


def test_unknown_fields_and_types_are_ignored_by_clients() -> None:
    """A client decoder skips unknown message types and unknown fields (the server may add them)."""
    assert decode_server_message('{"type":"news","headline":"x"}') is None
    hello = decode_server_message(
        '{"type":"hello","protocol":1,"server":"s","symbols":[],"max_rate":1,"heartbeat":5,"new":1}'
    )
    assert isinstance(hello, Hello)


def test_request_id_survives_a_bad_request() -> None:
    """A request with a usable id gets it back on its error."""
    with pytest.raises(ProtocolError) as info:
        decode_request('{"type":"subscribe","symbols":"AAPL","id":"r1"}')
    assert info.value.code == "bad_request" and info.value.request_id == "r1"
    assert "symbols" in info.value.message


def test_deeply_nested_json_is_a_bad_request() -> None:
    """Nesting deep enough to exhaust the parser is reported, not raised."""
    with pytest.raises(ProtocolError) as info:
        decode_request("[" * 100_000 + "]" * 100_000)
    assert info.value.code == "bad_request"


BARS_FRAMES = [
    b'{"type":"bars","symbol":"AAPL","interval":60,"bars":[{"t":60,"o":1.5,"h":1.6,"l":1.4,'
    b'"c":1.5,"v":300,"n":2},{"t":120,"o":1.5,"h":1.5,"l":1.5,"c":1.5,"v":100,"n":1,'
    b'"partial":true}],"id":7,"done":true}',
    encode_bar_update("AAPL", 60, (120, 150, 150, 150, 150, 100, 1), True),
]


def schema_validator(direction: str) -> Draft202012Validator:
    schema = json_schema()
    return Draft202012Validator({"$schema": schema["$schema"], **schema[direction]})


def test_schema_accepts_every_message_and_rejects_a_wrong_field() -> None:
    """Each message type of both directions, as the server and a client encode it, validates against the published JSON Schema; a wrong-typed field does not."""
    server = schema_validator("server_to_client")
    merged = encode_tick(
        "AAPL", 9, 1764130000.25, 187.4, 187.39, 187.41, 900, 12000, 3, 187.5, 187.3, 187.45
    )
    messages = [
        b'{"type":"ticks","ticks":[' + merged + b"]}",
        encode(Hello(symbols=["AAPL"], max_rate=50.0, heartbeat=5.0, epoch="e", rates=[50.0, 1.0])),
        encode(Subscribed(symbols=["AAPL"], id=1, max_rate=4.0)),
        encode(Unsubscribed(symbols=[], id="x")),
        b'{"type":"snapshot","symbol":"AAPL","ticks":[' + merged + b"]}",
        encode(Symbols(symbols=[SymbolInfo(symbol="AAPL", name="Apple", price=1.0)])),
        encode(Pong(ts=1.0, id=4)),
        encode(Heartbeat(ts=1.0)),
        encode(Error(code="unknown_symbol", message="m", id=1, symbols=["NOPE"])),
        *BARS_FRAMES,
    ]
    kinds = set()
    for data in messages:
        message = json.loads(data)
        server.validate(message)
        kinds.add(message["type"])
    assert kinds == SERVER_TYPES
    client = schema_validator("client_to_server")
    for request in [
        {
            "type": "subscribe",
            "symbols": ["AAPL"],
            "max_rate": 4,
            "snapshot": 10,
            "since": {"AAPL": 3},
        },
        {"type": "unsubscribe", "symbols": ["AAPL"], "id": 2},
        {"type": "list_symbols"},
        {"type": "ping", "id": "p"},
        {"type": "bars", "symbol": "AAPL", "interval": 60, "limit": 390, "before": 1, "id": 7},
        {"type": "subscribe", "symbols": ["AAPL"], "bars": [60, 300]},
    ]:
        client.validate(request)
    defs = json_schema()["server_to_client"]["$defs"]
    assert {"merged", "open", "high", "low"} <= set(defs["Tick"]["properties"])
    assert "rates" in defs["Hello"]["properties"] and "max_rate" in defs["Subscribed"]["properties"]
    bad = json.loads(messages[0])
    bad["ticks"][0]["seq"] = "x"
    assert not server.is_valid(bad)
    assert not client.is_valid({"type": "subscribe", "symbols": "AAPL"})


cents = st.integers(1, 10_000_000).map(lambda c: c / 100)


@given(
    seq=st.integers(1, 2**53),
    ts=st.floats(0, 4e9),
    price=cents,
    size=st.integers(0, 10**9),
    volume=st.integers(0, 2**53),
    merged=st.integers(1, 10**6),
    high=cents,
    low=cents,
)
def test_encode_tick_matches_the_model(
    seq: int, ts: float, price: float, size: int, volume: int, merged: int, high: float, low: float
) -> None:
    """The hand-written hot-path encoder produces exactly what the Tick model validates to."""
    data = encode_tick("BRK.B", seq, ts, price, price, price, size, volume, merged, high, low, low)
    tick = Tick.model_validate_json(data)
    assert (tick.seq, tick.price, tick.size, tick.volume) == (seq, price, size, volume)
    assert abs(tick.ts - ts) <= 1e-6
    if merged > 1:
        assert (tick.merged, tick.high, tick.low, tick.open) == (merged, high, low, low)
    else:
        assert tick.merged is None and tick.high is None and tick.open is None
