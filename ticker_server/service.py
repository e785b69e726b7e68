"""What the server answers before the WebSocket upgrade: health, metrics, auth, limits, TLS."""

from __future__ import annotations

import hmac
import json
import ssl
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Origin

if TYPE_CHECKING:
    from .app import TickerServer

__all__ = ["ServiceEndpoints", "bearer_token"]


def bearer_token(request: Request) -> str | None:
    """The token a client presented, from ``Authorization: Bearer`` or ``?token=``."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    tokens = parse_qs(urlsplit(request.path).query).get("token")
    return tokens[0] if tokens else None


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


class ServiceEndpoints:
    """The ``process_request`` hook and handshake settings of one server."""

    def __init__(self, server: TickerServer) -> None:
        self.server = server
        self.config = server.config

    @property
    def origins(self) -> list[Origin | None] | None:
        return [Origin(o) for o in self.config.allow_origins] or None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.certfile:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.config.certfile, self.config.keyfile)
        return context

    def health(self) -> dict[str, object]:
        gateway = self.server.gateway
        return {
            "status": "ok" if gateway is None or gateway.feed_available else "degraded",
            "uptime": round(self.server.clock() - self.server.started_at, 3),
            "connections": 0 if gateway is None else len(gateway.clients),
            "symbols": 0 if gateway is None else len(gateway.listings),
            "epoch": "" if self.server.bus is None else self.server.bus.epoch,
        }

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            return _response(HTTPStatus.OK, json.dumps(self.health()).encode(), "application/json")
        if path == "/metrics":
            from .metrics import render_metrics

            body, content_type = render_metrics(self.server)
            return _response(HTTPStatus.OK, body, content_type)
        if self.config.tokens:
            token = bearer_token(request)
            if token is None or not any(
                hmac.compare_digest(token.encode(), t.encode()) for t in self.config.tokens
            ):
                response = _response(
                    HTTPStatus.UNAUTHORIZED, b"missing or invalid token\n", "text/plain"
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="ticker"'
                return response
        gateway = self.server.gateway
        if gateway is not None and len(gateway.clients) >= self.config.max_connections:
            return _response(
                HTTPStatus.SERVICE_UNAVAILABLE, b"too many connections\n", "text/plain"
            )
        return None
