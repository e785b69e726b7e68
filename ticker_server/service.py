"""What the server answers before the WebSocket upgrade: health, metrics, auth, limits, TLS."""

from __future__ import annotations

import hmac
import json
import logging
import math
import ssl
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Origin

from .limits import AuthFailures

if TYPE_CHECKING:
    from .app import TickerServer
    from .connection import Connection

__all__ = ["AUTH_BURST", "AUTH_RATE", "ServiceEndpoints", "bearer_token"]

log = logging.getLogger("ticker_server.service")

AUTH_BURST = 5
"""Invalid tokens an address may present before it is slowed down."""
AUTH_RATE = 0.1
"""Attempts per second an address is allowed after that: one per 10 s."""


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


def _json(status: HTTPStatus, body: dict[str, object]) -> Response:
    return _response(status, json.dumps(body).encode(), "application/json")


class ServiceEndpoints:
    """The handshake hook (:meth:`process_request`) and handshake settings of one server.

    ``/livez`` always answers 200 while the process runs. ``/healthz`` answers 200
    or, while degraded (a task failed, or no feed), 503 with the reason; with
    ``--token`` it tells a caller without the token only that, and the counts to
    one with it. ``/metrics`` and the WebSocket need the token when one is set.
    """

    def __init__(self, server: TickerServer) -> None:
        self.server = server
        self.config = server.config
        self.failures = AuthFailures(AUTH_RATE, AUTH_BURST)
        """Failed tokens per address, which slow that address down."""

    @property
    def origins(self) -> list[Origin | None] | None:
        """The accepted Origins; no Origin header (a non-browser client) too unless
        --require-origin: browsers always send one, so the allowlist still stops them."""
        if not self.config.allow_origins:
            return None
        allowed: list[Origin | None] = [Origin(o) for o in self.config.allow_origins]
        return allowed if self.config.require_origin else [*allowed, None]

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.certfile:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.config.certfile, self.config.keyfile)
        return context

    def health(self, detailed: bool) -> tuple[HTTPStatus, dict[str, object]]:
        """The status (503 while degraded) and what to tell: counts only if ``detailed``."""
        server, gateway = self.server, self.server.gateway
        reason = server.supervisor.reason
        if reason is None and gateway is not None and not gateway.feed_available:
            reason = "market feed unavailable"
        body: dict[str, object] = {"status": "ok" if reason is None else "degraded"}
        if reason is not None:
            body["reason"] = reason
        if detailed:
            body["uptime"] = round(server.clock() - server.started_at, 3)
            body["connections"] = 0 if gateway is None else len(gateway.clients)
            body["symbols"] = 0 if gateway is None else len(gateway.listings)
            body["epoch"] = "" if server.bus is None else server.bus.epoch
        return (HTTPStatus.OK if reason is None else HTTPStatus.SERVICE_UNAVAILABLE), body

    def _token_valid(self, token: str) -> bool:
        valid = False
        for accepted in self.config.tokens:  # no early exit: every comparison costs the same
            valid |= hmac.compare_digest(token.encode(), accepted.encode())
        return valid

    def _authenticate(self, connection: Connection, request: Request) -> Response | None:
        """None if the request may go on, else the 401 (bad token) or 429 (too many) to answer."""
        peer = connection.remote_address[0] if connection.remote_address else "?"
        now = self.server.clock()
        wait = self.failures.retry_after(peer, now)
        if wait > 0:
            response = _response(
                HTTPStatus.TOO_MANY_REQUESTS, b"too many invalid tokens; wait\n", "text/plain"
            )
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        token = bearer_token(request)
        if token is not None and self._token_valid(token):
            return None
        self.failures.failed(peer, now)
        path = urlsplit(request.path).path[:64]
        log.warning("refused %s %r: %s token", peer, path, "no" if token is None else "invalid")
        if self.failures.retry_after(peer, now) > 0:
            log.warning(
                "slowing down %s: one attempt per %.0f s after repeated failures",
                peer,
                1 / AUTH_RATE,
            )
        response = _response(HTTPStatus.UNAUTHORIZED, b"missing or invalid token\n", "text/plain")
        response.headers["WWW-Authenticate"] = 'Bearer realm="ticker"'
        return response

    def process_request(self, connection: Connection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/livez":
            return _json(HTTPStatus.OK, {"status": "ok"})
        if path == "/healthz":
            detailed = True
            if self.config.tokens:
                # No token: the status only (load balancers); a token: checked, then the counts.
                detailed = bearer_token(request) is not None
                refused = self._authenticate(connection, request) if detailed else None
                if refused is not None:
                    return refused
            return _json(*self.health(detailed))
        if self.config.tokens:
            refused = self._authenticate(connection, request)
            if refused is not None:
                return refused
        if path == "/metrics":
            from .metrics import render_metrics

            body, content_type = render_metrics(self.server)
            return _response(HTTPStatus.OK, body, content_type)
        gateway = self.server.gateway
        if gateway is not None and len(gateway.clients) >= self.config.max_connections:
            return _response(
                HTTPStatus.SERVICE_UNAVAILABLE, b"too many connections\n", "text/plain"
            )
        return None
