"""Protocol v1: the typed messages that server, desktop client and tests share, and their codec.

This module does no I/O. Raw JSON becomes one of the models at the edge
(:func:`decode_request` on the server, :func:`decode_server_message` on a
client); everything past that edge is typed. The models live in :mod:`.messages`
and the rate and bar arithmetic in :mod:`.rates`; every name is imported from here.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from .messages import (
    CLIENT_TYPES,
    MAX_FRAME,
    PROTOCOL_VERSION,
    SERVER_NAME,
    SERVER_TYPES,
    SYMBOL_PATTERN,
    Bar,
    Bars,
    BarsRequest,
    BarUpdate,
    ClientMessage,
    Error,
    ErrorCode,
    Heartbeat,
    Hello,
    ListSymbols,
    Ping,
    Pong,
    RequestId,
    ServerMessage,
    Snapshot,
    Subscribe,
    Subscribed,
    SymbolInfo,
    Symbols,
    Tick,
    Ticks,
    Unsubscribe,
    Unsubscribed,
    encode_tick,
)
from .rates import (
    BAR_INTERVALS,
    DEFAULT_BAR_LIMIT,
    MAX_BAR_LIMIT,
    RATES,
    grant_rate,
    ts_micros,
    window_micros,
)

__all__ = [
    "BAR_INTERVALS",
    "CLIENT_TYPES",
    "DEFAULT_BAR_LIMIT",
    "MAX_BAR_LIMIT",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "RATES",
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

_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_server_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


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
