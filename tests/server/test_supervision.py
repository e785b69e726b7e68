"""Long-lived tasks killed by an injected exception: noticed, reported by /healthz, restarted."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ticker_server.app import TickerServer
from ticker_server.clock import steady_wall_clock
from ticker_server.config import ServerConfig
from ticker_server.supervision import Supervisor

from .conftest import TIMEOUT, PeerFactory
from .test_gateway import live_ticks
from .test_hardening import http_get

STABLE = 0.5
"""How long a restarted task must run before the tests' supervisor calls it healthy."""


def fail_once(owner: object, method: str) -> None:
    """Make ``owner.method`` raise once (a fault injected into a real running task), then work again."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        delattr(owner, method)  # the class's method is visible again
        raise RuntimeError("injected fault")

    setattr(owner, method, boom)


async def wait_until(supervisor: Supervisor, predicate: Callable[[], bool]) -> None:
    """Await the supervisor's changes until ``predicate()`` holds."""
    async with asyncio.timeout(TIMEOUT):
        while not predicate():
            await supervisor.changed()


@pytest.fixture
async def supervised(server_defaults: dict[str, Any]) -> AsyncIterator[TickerServer]:
    """A real server whose supervisor restarts fast and calls a task healthy after STABLE s."""
    server = TickerServer(
        ServerConfig(**server_defaults, heartbeat=0.3),
        supervisor=Supervisor(stable_after=STABLE, base=0.1),
    )
    await server.start()
    yield server
    await server.stop()


async def health(server: TickerServer) -> tuple[int, dict[str, Any]]:
    status, _, body = await asyncio.to_thread(
        http_get, server.url.replace("ws://", "http://") + "/healthz"
    )
    return status, json.loads(body)


@pytest.mark.parametrize(
    ("task", "target"),
    [
        ("feed", lambda server: server.feed.market),
        ("gateway maintenance", lambda server: server.gateway.upkeep),
    ],
)
async def test_a_failed_task_is_reported_then_restarted(
    supervised: TickerServer,
    make_peer: PeerFactory,
    task: str,
    target: Callable[[TickerServer], object],
) -> None:
    """An exception kills the feed or the maintenance pass: /healthz says 503 and why within 1 s, then the task is back and ticks flow."""
    server, supervisor = supervised, supervised.supervisor
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=["AAPL"])
    await live_ticks(peer, 3)
    fail_once(target(server), "advance" if task == "feed" else "plan")
    injected = time.monotonic()
    await wait_until(supervisor, lambda: task in supervisor.faults)
    status, body = await health(server)
    assert time.monotonic() - injected < 1.0
    assert status == 503 and body["status"] == "degraded"
    assert body["reason"] == f"{task} failed (RuntimeError), restarting"
    await wait_until(supervisor, lambda: not supervisor.faults)
    status, body = await health(server)
    assert status == 200 and body["status"] == "ok" and supervisor.failures == 1
    metrics = server.url.replace("ws://", "http://") + "/metrics"
    assert b"ticker_task_failures_total 1.0" in (await asyncio.to_thread(http_get, metrics))[2]
    await live_ticks(peer, 5)  # the feed is back
    await peer.send(type="unsubscribe", symbols=["AAPL"])
    await peer.expect("unsubscribed")
    await peer.expect("heartbeat")  # and so is the maintenance pass that sends them


async def test_a_crash_looping_task_stays_degraded_with_growing_delays() -> None:
    """A task failing again and again keeps its fault and waits longer each time."""
    supervisor = Supervisor(stable_after=10.0, base=0.02, cap=0.2)
    starts: list[float] = []

    async def broken() -> None:
        starts.append(time.monotonic())
        raise ValueError("always")

    task = supervisor.spawn("broken", broken)
    try:
        await wait_until(supervisor, lambda: supervisor.failures >= 6)
        assert supervisor.reason == "broken failed (ValueError), restarting"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert supervisor.faults == {}, "a cancelled task is no longer reported"
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert max(gaps[3:]) > 0.02, "the delay grew past the first ceiling"


async def test_a_task_that_returns_unasked_has_failed_too() -> None:
    """Returning while its owner still runs is a failure; returning once finished() is not."""
    supervisor = Supervisor(stable_after=10.0, base=0.01)
    closing = False
    runs = 0

    async def quits() -> None:
        nonlocal runs
        runs += 1

    task = supervisor.spawn("quitter", quits, finished=lambda: closing)
    await wait_until(supervisor, lambda: "quitter" in supervisor.faults)
    assert "RuntimeError" in (supervisor.reason or "")
    closing = True
    await asyncio.wait_for(task, TIMEOUT)
    assert runs >= 1 and supervisor.faults == {}


async def test_livez_answers_while_degraded(supervised: TickerServer) -> None:
    """Liveness stays 200 when readiness (/healthz) is 503."""
    assert supervised.gateway is not None
    fail_once(supervised.gateway.upkeep, "plan")
    await wait_until(supervised.supervisor, lambda: bool(supervised.supervisor.faults))
    base = supervised.url.replace("ws://", "http://")
    assert (await health(supervised))[0] == 503
    status, _, body = await asyncio.to_thread(http_get, base + "/livez")
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_the_steady_clock_ignores_wall_clock_steps() -> None:
    """The server's clock starts at the wall time and then follows the monotonic clock only."""
    wall, mono = [1_000_000.0], [50.0]
    clock = steady_wall_clock(lambda: wall[0], lambda: mono[0])
    assert clock() == 1_000_000.0
    wall[0] -= 3600.0  # the system clock steps back an hour
    mono[0] += 1.5
    assert clock() == 1_000_001.5
    wall[0] += 7200.0
    assert clock() == 1_000_001.5
