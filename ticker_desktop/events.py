"""What the client tells its listeners: the connection state and small frozen event classes.

Listeners get exactly these objects (never dicts); :data:`ClientEvent` is their union.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from ticker_server.protocol import Error, Hello, SymbolInfo, Tick

from .edge import QUIET

__all__ = [
    "ClientEvent",
    "ConnectionState",
    "HelloReceived",
    "InputRejected",
    "LatencyMeasured",
    "Listener",
    "RequestFailed",
    "ServerError",
    "StateChanged",
    "SubscriptionChanged",
    "SymbolsListed",
    "TicksReceived",
]


class ConnectionState(enum.Enum):
    """Where the connection is; the status bar shows it in colour."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ERROR = "error"
    """The server refused us (handshake, protocol); still retried, with backoff."""
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The connection moved to ``state``; ``retry_in`` is set while waiting to reconnect."""

    state: ConnectionState
    url: str
    detail: str = ""
    retry_in: float | None = None
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class HelloReceived:
    """A server greeted us; ``epoch_changed`` when its feed restarted since the last hello."""

    hello: Hello
    epoch_changed: bool = False


@dataclass(frozen=True, slots=True)
class TicksReceived:
    """New ticks (never a repeat); ``snapshot`` names the symbol when they come from a snapshot."""

    ticks: list[Tick]
    snapshot: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionChanged:
    """The whole set of symbols the server now streams to us."""

    symbols: list[str]


@dataclass(frozen=True, slots=True)
class SymbolsListed:
    symbols: list[SymbolInfo]


@dataclass(frozen=True, slots=True)
class LatencyMeasured:
    """Round trip of one ping, in seconds."""

    rtt: float


@dataclass(frozen=True, slots=True)
class ServerError:
    """The server refused something.

    ``request`` is the kind of request it answers, if known; ``dropped`` the
    symbols of a refused subscribe that are no longer wanted.
    """

    error: Error
    request: str | None = None
    dropped: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InputRejected:
    """Data from the server was rejected at the client's edge (at most one event per reason
    per log interval, carrying the count since the last one).

    ``totals`` holds every reason's count so far; ``quiet`` marks a reason that is normal
    with an honest server and need not be shown.
    """

    reason: str
    count: int
    detail: str
    totals: tuple[tuple[str, int], ...] = ()
    quiet: bool = False

    @property
    def shown_total(self) -> int:
        """Rejections so far that the user should know of."""
        return sum(n for reason, n in self.totals if reason not in QUIET)


ClientEvent = (
    StateChanged
    | HelloReceived
    | TicksReceived
    | SubscriptionChanged
    | SymbolsListed
    | LatencyMeasured
    | ServerError
    | InputRejected
)
Listener = Callable[[ClientEvent], None]


class RequestFailed(Exception):
    """An awaited request got an error reply."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error
