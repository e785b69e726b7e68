"""The server's settings, one frozen dataclass shared by the CLI, the app and tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

__all__ = ["SESSION", "Role", "ServerConfig", "redact_url"]

Role = Literal["all", "feed", "gateway"]

SESSION = 6.5 * 3600.0
"""Seconds in a US equity trading session (09:30-16:00)."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything a ticker server needs to know; every field has a documented default."""

    host: str = "127.0.0.1"
    port: int = 8765
    """0 picks a free port."""
    symbols: tuple[str, ...] | None = None
    """None: the built-in universe of about 20 well-known tickers."""
    tick_rate: float = 5.0
    """Mean generated ticks per second per symbol."""
    seed: int | None = None
    max_rate: float = 50.0
    """Cap on updates per second per symbol per client; 0 means no cap."""
    history: int = 1000
    """Ticks kept per symbol for snapshots and resume."""
    heartbeat: float = 5.0
    """Seconds of silence after which a client gets a heartbeat."""
    max_symbols: int = 200
    """Symbols one connection may hold."""
    max_buffer: int = 32 * 1024
    """Bytes waiting in a client's write buffer above which nothing more is written to it."""
    slow_grace: float = 30.0
    """Seconds a client may stay above max_buffer before it is closed with 1013."""
    sndbuf: int | None = None
    """SO_SNDBUF for client sockets; None leaves the kernel's autotuning (up to ~4 MB per socket),
    which hides a slow consumer from the server until that much is queued."""
    request_rate: float = 20.0
    request_burst: float = 50.0
    max_connections: int = 10_000
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    open_timeout: float = 10.0
    compression: bool = False
    """permessage-deflate; off by default (CPU cost and compression amplification)."""
    tokens: tuple[str, ...] = ()
    """Accepted bearer tokens; empty means no authentication."""
    allow_origins: tuple[str, ...] = ()
    """Accepted Origin headers; empty means any."""
    require_origin: bool = False
    """With allow_origins, refuse requests without an Origin header too (only browsers send one)."""
    certfile: str | None = None
    keyfile: str | None = None
    broker: str | None = None
    """redis://HOST:PORT/DB to run as a feed or gateway behind Redis; None: the in-process bus."""
    role: Role = "all"
    backfill: float = 0.0
    """Seconds of history the feed generates before it goes live. 0 here, so embedded
    servers and tests start at once; ``ticker-server`` defaults to a session (6.5 h)."""
    bar_retention: float = SESSION
    """Seconds of bars kept at every interval (a session: 23,400 one-second bars)."""

    @property
    def scheme(self) -> str:
        return "wss" if self.certfile else "ws"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs.

    ``redis://:PASS@host/0`` is how a Redis password is usually given (redis-py
    also takes ``?password=``), so every logged broker URL goes through this.
    """
    try:
        parts = urlsplit(url)
        userinfo, at, host = parts.netloc.rpartition("@")
        if at:
            user, colon, _ = userinfo.partition(":")
            # redis://PASS@host: redis-py reads a lone user part as the password.
            userinfo = f"{user}:***" if colon else "***"
        query = "&".join(
            f"{key}=***" if key.lower() == "password" else f"{key}={value}" if eq else key
            for key, eq, value in (item.partition("=") for item in parts.query.split("&"))
        )
        netloc = f"{userinfo}@{host}" if at else host
        return urlunsplit(parts._replace(netloc=netloc, query=query if parts.query else ""))
    except ValueError:  # unparsable: say nothing of it
        return "<unparsable URL>"
