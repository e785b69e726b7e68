"""Protocol v1: the typed messages that server, desktop client and tests share.

This module does no I/O. Raw JSON becomes one of these models at the edge
(:func:`decode_request` on the server, :func:`decode_server_message` on a
client); everything past that edge is typed. The one exception is the tick hot
path: :func:`encode_tick` writes a tick's JSON directly, once per tick, and a
test proves it round-trips through :class:`Tick`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

__all__ = [
    "BAR_INTERVALS",
    "DEFAULT_BAR_LIMIT",
    "MAX_BAR_LIMIT",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "RATES",
    "SERVER_NAME",
    "SYMBOL_PATTERN",
    "Bar",
    "BarUpdate",
    "Bars",
    "BarsRequest",
    "ClientMessage",
    "Error",
    "ErrorCode",
    "Heartbeat",
    "Hello",
    "ListSymbols",
    "Ping",
    "Pong",
    "ProtocolError",
    "RequestId",
    "ServerMessage",
    "Snapshot",
    "Subscribe",
    "Subscribed",
    "SymbolInfo",
    "Symbols",
    "Tick",
    "Ticks",
    "Unsubscribe",
    "Unsubscribed",
    "decode_request",
    "decode_server_message",
    "encode",
    "encode_tick",
    "grant_rate",
    "json_schema",
    "ts_micros",
    "window_micros",
]

PROTOCOL_VERSION = 1
SERVER_NAME = "ticker_server 0.1.0"
MAX_FRAME = 64 * 1024
"""Largest frame either side accepts; a bigger one closes with 1009."""

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,11}$")
"""Symbols are 1 to 12 characters of A-Z, 0-9, '.' and '-' (so they never need JSON escaping)."""

RATES: tuple[float, ...] = (
    50.0, 25.0, 20.0, 10.0, 5.0, 4.0, 2.0, 1.0,
    1 / 2, 1 / 4, 1 / 5, 1 / 10, 1 / 15, 1 / 20, 1 / 30, 1 / 60,
)  # fmt: skip
"""The update rates a server grants, fastest first: those whose window (1 / rate) divides one
second evenly (below one second) or one minute evenly. Windows are clock-aligned, so a candle
whose width is a whole multiple of the window is built exactly from the updates."""

BAR_INTERVALS: tuple[int, ...] = (1, 5, 15, 60, 300, 900, 3600)
"""The bar widths a server keeps and serves, in seconds (``bar_intervals`` in hello)."""
DEFAULT_BAR_LIMIT = 1000
"""Bars a ``bars`` request returns when it gives no ``limit``."""
MAX_BAR_LIMIT = 5000
"""The largest ``limit`` a ``bars`` request may ask; page back with ``before`` for more."""


def _check_interval(interval: int) -> int:
    if interval not in BAR_INTERVALS:
        supported = ", ".join(map(str, BAR_INTERVALS))
        raise ValueError(f"unsupported interval {interval}; supported: {supported}")
    return interval


def window_micros(rate: float) -> int:
    """The window of a granted rate in whole microseconds (0 for unthrottled, rate 0)."""
    return round(1_000_000 / rate) if rate > 0 else 0


def ts_micros(ts: float) -> int:
    """A tick's ``ts`` in whole microseconds, as both sides assign it to a window.

    Ticks go on the wire with six decimals, so this is exact for any ``ts`` that was
    read from the wire or generated on the microsecond grid.
    """
    return round(ts * 1_000_000)


def grant_rate(requested: float | None, cap: float) -> float:
    """The rate a server grants for a requested ``max_rate`` under its cap (0 = no cap).

    The request (or the cap, when the request is 0 or absent) rounds down to the
    nearest supported rate in :data:`RATES`; below the slowest, the slowest. With
    no cap and no request the result is 0: unthrottled.
    """
    want = requested or cap
    if cap > 0:
        want = min(want, cap)
    if want <= 0:
        return 0.0
    for rate in RATES:
        if rate <= want * (1 + 1e-9):
            return rate
    return RATES[-1]


RequestId: TypeAlias = str | int | None

ErrorCode: TypeAlias = Literal[
    "bad_request",
    "unknown_type",
    "unknown_symbol",
    "too_many_symbols",
    "rate_limited",
    "feed_unavailable",
    "internal_error",
]


class _Message(BaseModel):
    # Both sides ignore fields they do not know, so either may add fields later.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Request(_Message):
    # Requests are validated strictly: "5" is not a number and 1.5 is not a count.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    id: RequestId = None


# --------------------------------------------------------------------------- ticks


class Tick(_Message):
    """One price update of one symbol.

    A conflated tick (one that stands for several generated ticks) carries
    ``merged`` (how many it covers), ``open`` (the price of the first of them),
    ``high`` and ``low`` of their prices, and ``size`` summed over them; its
    ``seq``, ``ts``, ``price``, ``bid``, ``ask`` and ``volume`` are those of the
    last. An ordinary tick omits those four fields.
    """

    symbol: str
    seq: int = Field(ge=1)
    ts: float
    price: float = Field(gt=0)
    bid: float = Field(gt=0)
    ask: float = Field(gt=0)
    size: int = Field(ge=0)
    volume: int = Field(ge=0)
    merged: int | None = Field(default=None, ge=2)
    high: float | None = None
    low: float | None = None
    open: float | None = None

    @property
    def covers(self) -> int:
        """How many generated ticks this one stands for (1 unless merged)."""
        return self.merged or 1


def encode_tick(
    symbol: str,
    seq: int,
    ts: float,
    price: float,
    bid: float,
    ask: float,
    size: int,
    volume: int,
    merged: int = 1,
    high: float = 0.0,
    low: float = 0.0,
    open: float = 0.0,
) -> bytes:
    """Encode one tick as JSON bytes without building a model (the hot path).

    ``symbol`` must match :data:`SYMBOL_PATTERN`, which the server guarantees
    for every symbol it knows, so no escaping is needed.
    """
    if merged > 1:
        return (
            f'{{"symbol":"{symbol}","seq":{seq},"ts":{ts:.6f},"price":{price!r},'
            f'"bid":{bid!r},"ask":{ask!r},"size":{size},"volume":{volume},'
            f'"merged":{merged},"high":{high!r},"low":{low!r},"open":{open!r}}}'
        ).encode()
    return (
        f'{{"symbol":"{symbol}","seq":{seq},"ts":{ts:.6f},"price":{price!r},'
        f'"bid":{bid!r},"ask":{ask!r},"size":{size},"volume":{volume}}}'
    ).encode()


# ----------------------------------------------------------------- client -> server


class Subscribe(_Request):
    """Subscribe to symbols, or change the max_rate of symbols already held."""

    type: Literal["subscribe"]
    symbols: list[str] = Field(min_length=1)
    max_rate: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    snapshot: int = Field(default=0, ge=0)
    since: dict[str, int] | None = None
    bars: list[int] | None = None
    """Bar intervals (seconds, from :data:`BAR_INTERVALS`) to send live ``bar`` messages for."""

    @field_validator("bars")
    @classmethod
    def _bar_intervals(cls, value: list[int] | None) -> list[int] | None:
        for interval in value or ():
            _check_interval(interval)
        return None if value is None else list(dict.fromkeys(value))


class BarsRequest(_Request):
    """Ask for a symbol's bars at one interval: the newest ``limit`` before ``before``."""

    type: Literal["bars"]
    symbol: str
    interval: int
    limit: int = Field(default=DEFAULT_BAR_LIMIT, ge=1, le=MAX_BAR_LIMIT)
    before: int | None = None
    """Exclusive bound on the bars' start time (Unix seconds), to page back; None: up to now."""

    _interval = field_validator("interval")(_check_interval)


class Unsubscribe(_Request):
    type: Literal["unsubscribe"]
    symbols: list[str] = Field(min_length=1)


class ListSymbols(_Request):
    type: Literal["list_symbols"]


class Ping(_Request):
    type: Literal["ping"]


ClientMessage: TypeAlias = Annotated[
    Subscribe | Unsubscribe | ListSymbols | Ping | BarsRequest, Field(discriminator="type")
]
CLIENT_TYPES = frozenset({"subscribe", "unsubscribe", "list_symbols", "ping", "bars"})

# ----------------------------------------------------------------- server -> client


class Hello(_Message):
    type: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    server: str = SERVER_NAME
    symbols: list[str]
    max_rate: float
    heartbeat: float
    epoch: str = ""
    """Identifies the feed's run: after a feed restart seqs start again, so a client
    compares seqs (and sends ``since``) only within one epoch."""
    rates: list[float] = Field(default_factory=list)
    """The max_rate values this server grants, fastest first (see :data:`RATES`)."""
    bar_intervals: list[int] = Field(default_factory=lambda: list(BAR_INTERVALS))
    """The bar widths (seconds) this server serves; absent from servers without bars."""


class Subscribed(_Message):
    type: Literal["subscribed"] = "subscribed"
    symbols: list[str]
    id: RequestId = None
    max_rate: float | None = None
    """The rate granted to the symbols of this request (0: unthrottled); absent from
    servers that predate it."""


class Unsubscribed(_Message):
    type: Literal["unsubscribed"] = "unsubscribed"
    symbols: list[str]
    id: RequestId = None


class Snapshot(_Message):
    type: Literal["snapshot"] = "snapshot"
    symbol: str
    ticks: list[Tick]


class Ticks(_Message):
    type: Literal["ticks"] = "ticks"
    ticks: list[Tick]


class SymbolInfo(_Message):
    symbol: str
    name: str
    price: float


class Symbols(_Message):
    type: Literal["symbols"] = "symbols"
    symbols: list[SymbolInfo]
    id: RequestId = None


class Pong(_Message):
    type: Literal["pong"] = "pong"
    ts: float
    id: RequestId = None


class Heartbeat(_Message):
    type: Literal["heartbeat"] = "heartbeat"
    ts: float


class Bar(_Message):
    """One OHLCV bar: the ticks with ``t <= ts < t + interval`` (``t`` in Unix seconds)."""

    t: int
    o: float
    h: float
    l: float  # noqa: E741 (the field's name on the wire)
    c: float
    v: int
    """Shares traded in the bar (the summed tick sizes)."""
    n: int
    """Ticks in the bar."""
    partial: bool | None = None
    """True on a bar still forming: it may change until ``t + interval``."""


class Bars(_Message):
    """One page (or part of one) of the answer to a ``bars`` request, bars oldest first."""

    type: Literal["bars"] = "bars"
    symbol: str
    interval: int
    bars: list[Bar]
    id: RequestId = None
    done: bool = True
    """False while more ``bars`` messages of the same answer follow."""


class BarUpdate(_Message):
    """A live bar: the forming bar changed (``partial`` true) or it closed (false)."""

    type: Literal["bar"] = "bar"
    symbol: str
    interval: int
    bar: Bar
    partial: bool


class Error(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str
    id: RequestId = None
    symbols: list[str] | None = None


ServerMessage: TypeAlias = Annotated[
    Hello
    | Subscribed
    | Unsubscribed
    | Snapshot
    | Ticks
    | Symbols
    | Pong
    | Heartbeat
    | Error
    | Bars
    | BarUpdate,
    Field(discriminator="type"),
]

_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_server_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
SERVER_TYPES = frozenset(
    {
        "hello",
        "subscribed",
        "unsubscribed",
        "snapshot",
        "ticks",
        "symbols",
        "pong",
        "heartbeat",
        "error",
        "bars",
        "bar",
    }
)


class ProtocolError(Exception):
    """A request the server cannot act on; becomes an ``error`` message."""

    def __init__(self, code: ErrorCode, message: str, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.request_id = request_id

    def to_message(self) -> Error:
        return Error(code=self.code, message=self.message, id=self.request_id)


def _describe(error: ValidationError) -> str:
    parts = []
    for detail in error.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in detail["loc"][1:]) or "message"
        parts.append(f"{where}: {detail['msg']}")
    return "; ".join(parts)


def _request_id(raw: dict[str, Any]) -> RequestId:
    rid = raw.get("id")
    return rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None


def decode_request(data: str | bytes) -> ClientMessage:
    """Turn one client frame into a typed request.

    Raises:
        ProtocolError: ``bad_request`` for anything that is not a JSON object
            with the right fields and types, ``unknown_type`` for a type this
            server does not know. The error carries the request's id when it
            had a usable one.
    """
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_request", "message is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError(
            "bad_request", f"message must be a JSON object, not {type(raw).__name__}"
        )
    rid = _request_id(raw)
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_request", "type: a string field 'type' is required", rid)
    if kind not in CLIENT_TYPES:
        shown = kind if len(kind) <= 40 else kind[:40] + "..."
        raise ProtocolError("unknown_type", f"type: unknown message type {shown!r}", rid)
    try:
        return _client_adapter.validate_python(raw)
    except ValidationError as exc:
        raise ProtocolError("bad_request", _describe(exc), rid) from None


def decode_server_message(data: str | bytes) -> ServerMessage | None:
    """Turn one server frame into a typed message; None for a type this client does not know.

    Raises:
        ValueError: the frame is not JSON or a known type has bad fields.
    """
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError("server message is not a JSON object")
    if raw.get("type") not in SERVER_TYPES:
        return None
    return _server_adapter.validate_python(raw)


def encode(message: BaseModel) -> bytes:
    """Encode a control message as compact JSON bytes, leaving out unset optional fields."""
    return message.model_dump_json(exclude_none=True).encode()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of both directions of protocol v1, generated from the models."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ticker protocol v1",
        "client_to_server": _client_adapter.json_schema(),
        "server_to_client": _server_adapter.json_schema(),
    }
