"""How the desktop client talks to a server: the one set of client timings and request sizes.

Both halves of the client read it: the session (:mod:`.session`) the request sizes,
the rate to ask for and what to believe; the connection (:mod:`.connection`) the
timings, TLS and token. Nothing here does I/O, so the session stays pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .edge import EdgeLimits

__all__ = ["ClientOptions", "is_rate"]


def is_rate(rate: float) -> bool:
    """A rate a request may carry: finite, positive, at most one update a microsecond."""
    return math.isfinite(rate) and 0 < rate <= 1e6


@dataclass(frozen=True)
class ClientOptions:
    """How the client talks to the server; every field has a default that suits the dashboard."""

    max_rate: float | None = 60.0
    """Updates per second per symbol to ask for (one per painted frame); None: the server's cap."""
    choose_rate: Callable[[list[float], float | None], float | None] | None = None
    """Picks the max_rate to ask for from the rates a server grants (its hello's ``rates``)
    and :attr:`max_rate` under the server's cap; unused against a server that lists none."""
    snapshot: int = 1000
    """Ticks of history to ask for with a new subscription."""
    ping_interval: float = 2.0
    """Seconds between RTT pings."""
    stale_after: float | None = None
    """Seconds of silence after which the connection is dropped; None: 3x the heartbeat."""
    open_timeout: float = 5.0
    close_timeout: float = 1.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    stable_after: float = 10.0
    """Seconds a connection must stay live before the backoff starts again from its base."""
    retry_later: float = 10.0
    """Seconds added to the backoff after a close with 1013 (try again later)."""
    policy_wait: float = 30.0
    """Seconds added to the backoff after a close with 1008 (policy violation)."""
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    """What the client believes of the server's data (:mod:`.edge`)."""
    max_resume: int = 10_000
    """Ticks of a resume gap accepted per symbol (the server sends what we missed)."""
    log_interval: float = 10.0
    """Seconds between two log lines of one kind of rejected data or server error."""
    token: str | None = field(default=None, repr=False)
    """Bearer token for a server started with --token; sent in the Authorization header,
    never logged (left out of repr, and masked in websockets' debug log)."""
    cafile: str | None = None
    """PEM file of a private CA to trust for wss:// (default: the system's trust store)."""
