"""Upkeep decisions from made-up clocks: heartbeats, keepalive, unblocking and slow closes, no sleeping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from ticker_server.upkeep import (
    CLOSE_PING_TIMEOUT,
    CLOSE_SLOW_CONSUMER,
    Close,
    Heartbeat,
    SendPing,
    Unblock,
    Upkeep,
    UpkeepRules,
)

RULES = UpkeepRules(heartbeat=5.0, ping_interval=20.0, ping_timeout=20.0, slow_grace=10.0)


@dataclass(eq=False)
class Clocks:
    """One client's clocks as upkeep reads them (loop-time seconds)."""

    blocked: bool = False
    paused: bool = False
    closing: bool = False
    blocked_since: float = 0.0
    last_write: float = 0.0
    ping_sent: float = 0.0
    last_ping: float = 0.0
    pong_at: float = 0.0


def kinds(decisions: Sequence[object]) -> list[str]:
    return [type(d).__name__ for d in decisions]


def test_a_quiet_client_gets_a_heartbeat_and_a_busy_one_none() -> None:
    """Only a client without a write for a heartbeat period gets one."""
    quiet, busy = (
        Clocks(last_write=100.0, last_ping=100.0),
        Clocks(last_write=104.0, last_ping=100.0),
    )
    decisions = Upkeep(RULES).plan([quiet, busy], [], now=105.0)
    assert decisions == [Heartbeat(quiet)]


def test_heartbeats_are_looked_for_once_per_period() -> None:
    """Between two heartbeat passes (heartbeat / 2, at most 1 s) a quiet client is not visited again."""
    upkeep, quiet = Upkeep(RULES), Clocks(last_write=0.0)
    assert upkeep.plan([quiet], [], now=10.0) == [Heartbeat(quiet)]
    assert upkeep.plan([quiet], [], now=10.5) == []
    assert upkeep.plan([quiet], [], now=11.0) == [Heartbeat(quiet)]


def test_ping_then_timeout_then_close_1011() -> None:
    """A client is pinged every ping_interval; a pong that is ping_timeout late closes it with 1011."""
    upkeep, client = Upkeep(RULES), Clocks(last_write=1e9, last_ping=0.0)
    assert upkeep.plan([client], [], now=19.0) == []
    assert upkeep.plan([client], [], now=20.0) == [SendPing(client)]
    client.ping_sent = client.last_ping = 20.0
    assert upkeep.plan([client], [], now=40.0) == []  # waiting, not yet late
    assert upkeep.plan([client], [], now=41.0) == [
        Close(client, CLOSE_PING_TIMEOUT, "keepalive ping timeout")
    ]


def test_a_pong_in_time_keeps_the_client() -> None:
    """With its pong back, the client is not closed and is pinged again an interval later."""
    upkeep, client = Upkeep(RULES), Clocks(last_write=1e9, ping_sent=20.0, last_ping=20.0)
    client.pong_at = 20.01
    assert upkeep.plan([client], [], now=39.0) == []
    assert upkeep.plan([client], [], now=41.0) == [SendPing(client)]


def test_no_keepalive_when_ping_interval_is_zero() -> None:
    """ping_interval 0 turns pings and their timeouts off."""
    rules = UpkeepRules(heartbeat=5.0, ping_interval=0.0, ping_timeout=1.0, slow_grace=10.0)
    client = Clocks(last_write=1e9, ping_sent=1.0, last_ping=1.0)
    assert Upkeep(rules).plan([client], [], now=1000.0) == []


def test_blocked_client_unblocked_once_drained_else_closed_after_grace() -> None:
    """A blocked client is unblocked when its transport resumed, or closed with 1013 past slow_grace, never pinged meanwhile."""
    drained = Clocks(blocked=True, paused=False, blocked_since=0.0)
    stuck = Clocks(blocked=True, paused=True, blocked_since=0.0)
    assert Upkeep(RULES).plan([drained, stuck], [drained, stuck], now=10.0) == [Unblock(drained)]
    assert Upkeep(RULES).plan([stuck], [stuck], now=10.01) == [
        Close(stuck, CLOSE_SLOW_CONSUMER, "slow consumer")
    ]


clocks = st.builds(
    Clocks,
    blocked=st.booleans(),
    paused=st.booleans(),
    closing=st.booleans(),
    blocked_since=st.floats(0, 100),
    last_write=st.floats(0, 100),
    ping_sent=st.one_of(st.just(0.0), st.floats(0, 100)),
    last_ping=st.floats(0, 100),
    pong_at=st.floats(0, 100),
)


@given(st.lists(clocks, max_size=20), st.floats(0, 200))
def test_every_decision_follows_the_rules(clients: list[Clocks], now: float) -> None:
    """Whatever the clocks: nothing for closing clients, at most one decision of a kind per client, each justified."""
    blocked = [c for c in clients if c.blocked]
    decisions = Upkeep(RULES).plan(clients, blocked, now)
    seen = [(id(d.client), type(d)) for d in decisions]
    assert len(seen) == len(set(seen))
    for d in decisions:
        c = d.client
        assert not c.closing
        if isinstance(d, Unblock):
            assert c.blocked and not c.paused
        elif isinstance(d, Heartbeat):
            assert not c.blocked and now - c.last_write >= RULES.heartbeat
        elif isinstance(d, SendPing):
            assert not c.blocked and now - c.last_ping >= RULES.ping_interval
            assert not (c.ping_sent and c.pong_at < c.ping_sent)
        elif d.code == CLOSE_SLOW_CONSUMER:
            assert c.blocked and c.paused and now - c.blocked_since > RULES.slow_grace
        else:
            assert d.code == CLOSE_PING_TIMEOUT and not c.blocked
            assert c.pong_at < c.ping_sent and now - c.ping_sent > RULES.ping_timeout
    # And nothing due is missed: a drained blocked client is always unblocked.
    for c in blocked:
        if not c.closing and not c.paused:
            assert Unblock(c) in decisions
    assert set(kinds(decisions)) <= {"Unblock", "Close", "Heartbeat", "SendPing"}
