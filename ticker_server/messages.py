"""Protocol v1's messages: the pydantic models of both directions, and the tick hot path.

No I/O; :mod:`.protocol` turns raw JSON into these models at the edge and is the module
the rest of the code imports them from. :func:`encode_tick` writes a tick's JSON directly,
once per tick, and a test proves it round-trips through :class:`Tick`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .rates import BAR_INTERVALS, DEFAULT_BAR_LIMIT, MAX_BAR_LIMIT, check_interval

__all__ = [
    "CLIENT_TYPES",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "SERVER_NAME",
    "SERVER_TYPES",
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
    "encode_tick",
]

PROTOCOL_VERSION = 1
SERVER_NAME = "ticker_server 0.1.0"
MAX_FRAME = 64 * 1024
"""Largest frame either side accepts; a bigger one closes with 1009."""

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,11}$")
"""Symbols are 1 to 12 characters of A-Z, 0-9, '.' and '-' (so they never need JSON escaping)."""


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
            check_interval(interval)
        return None if value is None else list(dict.fromkeys(value))


class BarsRequest(_Request):
    """Ask for a symbol's bars at one interval: the newest ``limit`` before ``before``."""

    type: Literal["bars"]
    symbol: str
    interval: int
    limit: int = Field(default=DEFAULT_BAR_LIMIT, ge=1, le=MAX_BAR_LIMIT)
    before: int | None = None
    """Exclusive bound on the bars' start time (Unix seconds), to page back; None: up to now."""

    _interval = field_validator("interval")(check_interval)


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
