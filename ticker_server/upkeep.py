"""What the gateway's periodic pass does to its clients, decided without I/O.

Heartbeats to quiet clients, keepalive pings and the close of a client whose
pong is late, the unblocking of a client whose socket drained and the close of
one that stayed blocked too long: each is a decision taken from the clients'
clocks and ``now`` (the event loop's monotonic time), so tests check them with
made-up times instead of sleeping. The gateway applies the decisions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = [
    "CLOSE_PING_TIMEOUT",
    "CLOSE_SLOW_CONSUMER",
    "Close",
    "Decision",
    "Heartbeat",
    "SendPing",
    "Tracked",
    "Unblock",
    "Upkeep",
    "UpkeepRules",
]

CLOSE_SLOW_CONSUMER = 1013
CLOSE_PING_TIMEOUT = 1011
"""Close code when a keepalive ping goes unanswered (as websockets' own keepalive)."""


class Tracked(Protocol):
    """The clocks of one client that upkeep reads (loop-time seconds; 0: never)."""

    @property
    def blocked(self) -> bool: ...
    @property
    def paused(self) -> bool:
        """Its transport's write buffer is above the high-water mark."""

    @property
    def closing(self) -> bool: ...
    @property
    def blocked_since(self) -> float: ...
    @property
    def last_write(self) -> float: ...
    @property
    def ping_sent(self) -> float:
        """When the keepalive ping that may still await its pong went out (0: none)."""

    @property
    def last_ping(self) -> float:
        """When the latest keepalive ping went out (or the client connected)."""

    @property
    def pong_at(self) -> float: ...


C = TypeVar("C", bound=Tracked)


@dataclass(frozen=True, slots=True)
class Unblock(Generic[C]):
    """The client's socket drained: it may be written to again (and catch up)."""

    client: C


@dataclass(frozen=True, slots=True)
class Close(Generic[C]):
    client: C
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Heartbeat(Generic[C]):
    """Nothing was written to the client for a heartbeat period."""

    client: C


@dataclass(frozen=True, slots=True)
class SendPing(Generic[C]):
    client: C


Decision = Unblock[C] | Close[C] | Heartbeat[C] | SendPing[C]


@dataclass(frozen=True, slots=True)
class UpkeepRules:
    """The periods and limits of upkeep, in seconds (a ping_interval of 0: no keepalive)."""

    heartbeat: float
    ping_interval: float
    ping_timeout: float
    slow_grace: float

    @property
    def heartbeat_period(self) -> float:
        """How often quiet clients are looked for: a heartbeat is at most this late."""
        return min(1.0, self.heartbeat / 2)

    @property
    def keepalive_period(self) -> float:
        """How often pings are sent and checked: a timeout is noticed at most this late."""
        return min(1.0, self.ping_interval / 4, self.ping_timeout / 4)


class Upkeep:
    """Decides, at each pass, what every client needs; heartbeats and pings on their own periods.

    Scanning every client each pass would cost 10,000 visits every 50 ms; the
    blocked ones are few and are looked at every pass.
    """

    def __init__(self, rules: UpkeepRules) -> None:
        self.rules = rules
        self.next_heartbeat = 0.0
        self.next_keepalive = 0.0

    def plan(self, clients: Iterable[C], blocked: Iterable[C], now: float) -> list[Decision[C]]:
        """The decisions due at ``now``, blocked clients first.

        Args:
            clients: every open client.
            blocked: the clients above their buffer limit (a subset of ``clients``).
            now: loop-time seconds.
        """
        rules = self.rules
        decisions: list[Decision[C]] = []
        for client in blocked:
            if client.closing:
                continue
            if not client.paused:
                decisions.append(Unblock(client))
            elif now - client.blocked_since > rules.slow_grace:
                decisions.append(Close(client, CLOSE_SLOW_CONSUMER, "slow consumer"))
        heartbeats = now >= self.next_heartbeat
        if heartbeats:
            self.next_heartbeat = now + rules.heartbeat_period
        keepalive = rules.ping_interval > 0 and now >= self.next_keepalive
        if keepalive:
            self.next_keepalive = now + rules.keepalive_period
        if heartbeats or keepalive:
            for client in clients:
                if client.blocked or client.closing:
                    # A blocked client is left to the slow-consumer rule: what we would
                    # send it queues behind the backlog it is not reading.
                    continue
                if heartbeats and now - client.last_write >= rules.heartbeat:
                    decisions.append(Heartbeat(client))
                if keepalive:
                    decision = self._keepalive(client, now)
                    if decision is not None:
                        decisions.append(decision)
        return decisions

    def _keepalive(self, client: C, now: float) -> Decision[C] | None:
        rules = self.rules
        sent = client.ping_sent
        if sent and client.pong_at < sent:  # still waiting for its pong
            if now - sent > rules.ping_timeout:
                return Close(client, CLOSE_PING_TIMEOUT, "keepalive ping timeout")
            return None
        if now - client.last_ping >= rules.ping_interval:
            return SendPing(client)
        return None
