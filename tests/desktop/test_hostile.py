"""The client against a hostile server: no crash, no freeze over 250 ms, bounded, truthful.

Each test runs a :class:`~.hostile.HostileServer` (websockets' asyncio server on
port 0) that lies in one way, and proves the client rejects the lie at the edge
(counted, logged once per interval, reported for the status bar), keeps what is
true around it, keeps its event loop responsive (measured with :class:`LoopLag`)
and does not reconnect in a tight loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import math
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from websockets.asyncio.server import ServerConnection

from ticker_desktop.app import make_window
from ticker_desktop.buffers import suited_rate
from ticker_desktop.client import (
    ClientOptions,
    ConnectionState,
    InputRejected,
    ServerError,
    StateChanged,
    TickerClient,
    TicksReceived,
)
from ticker_desktop.main_window import MainWindow

from .conftest import FAST, TIMEOUT, EventLog, until
from .hostile import HostileServer, LoopLag, hello, subscribed, tick, ticks

FREEZE = 0.25
"""The longest the loop may be held: a dashboard stuck longer than this looks frozen."""


@pytest.fixture(autouse=True)
def frozen_heap() -> Iterator[None]:
    """Leave the test process's own heap out of the garbage collector's full passes.

    A full pass walks every object of the process: in this one (pytest, hypothesis,
    Qt, every test module) it took 120-225 ms here, in the dashboard's own 85,000
    objects 80-110 ms, and a flood's allocations make one likely. That is the
    runtime's pause, not the client's; ticker-desktop should call ``gc.freeze()``
    once its window is up, as this fixture does, so the lag measured is the
    client's own.
    """
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def seqs(log: EventLog, symbol: str = "AAPL") -> list[int]:
    return [t.seq for e in log.of(TicksReceived) for t in e.ticks if t.symbol == symbol]


def lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


async def idle(ws: ServerConnection) -> None:
    """Keep the connection open (with heartbeats) until the client or the test ends it."""
    while True:
        await ws.send(json.dumps({"type": "heartbeat", "ts": time.time()}))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.3):
                await ws.wait_closed()
                return


async def run_client(
    url: str, options: ClientOptions = FAST, symbols: tuple[str, ...] = ("AAPL",)
) -> tuple[TickerClient, EventLog]:
    client = TickerClient(url, options)
    log = EventLog(client)
    client.start()
    await client.subscribe(list(symbols))
    return client, log


# ------------------------------------------------------------ lies inside the ticks

POISON: list[tuple[str, dict[str, Any], str]] = [
    ("price NaN", {"price": math.nan}, "bad_tick"),
    ("price Infinity", {"price": math.inf}, "not_finite"),
    ("price negative", {"price": -1.0}, "bad_tick"),
    ("price absurd", {"price": 1e300}, "absurd_value"),
    ("ts NaN", {"ts": math.nan}, "not_finite"),
    ("ts far in the future", {"ts": time.time() + 10 * 365 * 86400}, "ts_future"),
    ("seq backwards", {"seq": 1}, "seq_old"),
    ("seq jumps by 2**40", {"seq": 2 + 2**40}, "seq_jump"),
    ("seq jumps by 2**62", {"seq": 2 + 2**62}, "absurd_value"),
    ("seq 2**63", {"seq": 2**63}, "absurd_value"),
    ("symbol not subscribed", {"symbol": "MSFT"}, "unsubscribed"),
]


@pytest.mark.parametrize(("lie", "reason"), [p[1:] for p in POISON], ids=[p[0] for p in POISON])
async def test_a_lie_in_the_ticks_is_rejected_and_the_truth_flows_on(
    lie: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One poisoned tick between good ones is rejected for its reason; the good ones all arrive."""

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello())
        await subscribed(ws)
        await ws.send(ticks(tick(1), tick(**{"seq": 2, **lie})))  # beside a good one
        await ws.send(ticks(tick(2)))
        await ws.send(ticks(tick(3)))
        await idle(ws)

    caplog.set_level(logging.INFO, "ticker_desktop")
    async with HostileServer(script) as server, LoopLag() as lag:
        client, log = await run_client(server.url)
        try:
            await until(lambda: seqs(log) == [1, 2, 3], "the good ticks 1, 2, 3")
            report = await log.wait_for(InputRejected)
        finally:
            await client.close()
    assert (report.reason, report.count) == (reason, 1)
    assert client.gate.rejections.totals == {reason: 1}
    assert report.quiet == (reason == "unsubscribed"), "only the normal reasons stay quiet"
    assert len(lines(caplog, f"rejected 1 {reason}")) == 1
    assert len(server.arrivals) == 1, "a lie in the data is no reason to reconnect"
    assert lag.worst < FREEZE, f"{lag}"


async def test_garbage_flood_logs_one_line_and_keeps_the_loop_responsive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Thousands of garbage frames (text, deep nesting, binary, 64 KiB) cost one log line each kind."""
    kinds = ["not json", "[" * 60_000, b"\xff\x00" * 30_000, json.dumps({"type": "x" * 65_000})]
    per_kind = 500

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello())
        await subscribed(ws)
        for _ in range(per_kind):
            for frame in kinds:
                await ws.send(frame)
        await ws.send(ticks(tick(1)))
        await idle(ws)

    caplog.set_level(logging.INFO, "ticker_desktop")
    async with HostileServer(script) as server, LoopLag() as lag:
        client, log = await run_client(server.url)
        try:
            await until(lambda: seqs(log) == [1], "the good tick after the flood", TIMEOUT * 3)
        finally:
            await client.close()
    totals = client.gate.rejections.totals
    assert totals == {"malformed": 3 * per_kind, "unknown_type": per_kind}
    assert len(lines(caplog, "rejected")) == 2, "one line per reason within the interval"
    assert client.state is ConnectionState.CLOSED and len(server.arrivals) == 1
    assert lag.worst < FREEZE, f"{lag}"


def big_tick_frames(count: int, symbol: str = "AAPL") -> list[str]:
    """``count`` frames just under 64 KiB, each of a few hundred valid ticks, seqs from 1."""
    frames, seq = [], 1
    for _ in range(count):
        batch: list[dict[str, Any]] = []
        size = len(ticks())
        while size < 63_000:
            batch.append(tick(seq, symbol))
            size += len(json.dumps(batch[-1])) + 2
            seq += 1
        frames.append(ticks(*batch))
    assert all(60_000 < len(f) <= 64 * 1024 for f in frames)
    return frames


class TickCounter:
    """Counts delivered ticks and checks they come in seq order, keeping none of them.

    Holding a flood's worth of Tick objects (as :class:`EventLog` does) makes the
    garbage collector's full passes take 200+ ms: the test's lag, not the client's.
    """

    def __init__(self) -> None:
        self.count = 0
        self.last = 0

    def __call__(self, event: object) -> None:
        if isinstance(event, TicksReceived):
            for t in event.ticks:
                assert t.seq == self.last + 1, (self.last, t.seq)
                self.last = t.seq
            self.count += len(event.ticks)


async def test_flood_of_64k_frames_never_freezes_the_loop() -> None:
    """Full-size tick frames as fast as the socket takes them: every tick lands, no 250 ms stall."""
    frames = big_tick_frames(200)
    expected = sum(len(json.loads(f)["ticks"]) for f in frames)

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello())
        await subscribed(ws)
        for frame in frames:
            await ws.send(frame)
        await idle(ws)

    counter = TickCounter()
    async with HostileServer(script) as server, LoopLag() as lag:
        client = TickerClient(server.url, FAST)
        client.add_listener(counter)
        client.start()
        await client.subscribe(["AAPL"])
        try:
            await until(lambda: counter.count == expected, "every tick", TIMEOUT * 3)
        finally:
            await client.close()
    assert len(server.arrivals) == 1 and not client.gate.rejections.totals
    assert lag.samples > 10 and lag.worst < FREEZE, f"{lag}"


async def test_flood_memory_stays_bounded_whatever_the_server_sends() -> None:
    """7.5 MB of frames peak under 4 MB: the client holds a bounded queue, not the flood.

    (Holding the flood's 50,000 ticks would take some 25 MB; tracemalloc sees the
    server's buffers too, which are part of the 4 MB.)
    """
    frames = big_tick_frames(120)
    sent = sum(len(f) for f in frames)
    expected = sum(len(json.loads(f)["ticks"]) for f in frames)
    counter = TickCounter()

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello())
        await subscribed(ws)
        for frame in frames:
            await ws.send(frame)
        await idle(ws)

    async with HostileServer(script) as server:
        client = TickerClient(server.url, FAST)
        client.add_listener(counter)
        tracemalloc.start()
        try:
            client.start()
            await client.subscribe(["AAPL"])
            baseline = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            await until(lambda: counter.count >= expected, "the flood", TIMEOUT * 6)
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
            await client.close()
    assert sent > 7.5e6 and peak < 4e6, f"peak {peak / 1e6:.1f} MB for {sent / 1e6:.1f} MB sent"


# ---------------------------------------------------------------- snapshots, errors


async def test_snapshot_larger_than_asked_is_cut_to_what_was_asked() -> None:
    """Asked for 20 ticks of history, offered 20,000: the client takes 20, then live ticks."""
    options = dataclasses.replace(FAST, snapshot=20)
    history = 20_000

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello())
        request = await subscribed(ws)
        assert request["snapshot"] == 20
        for start in range(1, history + 1, 400):
            batch = [tick(s) for s in range(start, start + 400)]
            await ws.send(json.dumps({"type": "snapshot", "symbol": "AAPL", "ticks": batch}))
        await ws.send(ticks(tick(history + 1)))
        await idle(ws)

    async with HostileServer(script) as server, LoopLag() as lag:
        client, log = await run_client(server.url, options)
        try:
            await until(lambda: seqs(log)[-1:] == [history + 1], "the live tick")
        finally:
            await client.close()
    assert seqs(log) == [*range(1, 21), history + 1]
    assert client.gate.rejections.totals == {"snapshot_excess": history - 20}
    assert lag.worst < FREEZE, f"{lag}"


async def test_error_flood_is_shown_once_and_shortened(caplog: pytest.LogCaptureFixture) -> None:
    """Unsolicited errors with invented codes and 60 KB messages: one line, one event, short text."""

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello())
        await subscribed(ws)
        for i in range(300):
            error = {"type": "error", "code": f"made_up_{i}", "message": "boo " * 15_000}
            await ws.send(json.dumps(error))
        await ws.send(ticks(tick(1)))
        await idle(ws)

    async with HostileServer(script) as server, LoopLag() as lag:
        client, log = await run_client(server.url)
        try:
            await until(lambda: seqs(log) == [1], "the tick after the errors")
        finally:
            await client.close()
    shown = log.of(ServerError)
    assert len(shown) == 1 and len(shown[0].error.message) <= 201
    assert len(lines(caplog, "server error")) == 1
    assert all(len(r.getMessage()) < 400 for r in caplog.records)
    assert lag.worst < FREEZE, f"{lag}"


async def test_rates_that_are_not_rates_are_dropped() -> None:
    """Infinite, NaN or negative rates in the hello, or a NaN grant, never reach a request."""
    options = dataclasses.replace(FAST, choose_rate=suited_rate)
    asked: list[Any] = []

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello(rates=[math.inf, math.nan, -5.0, 1e300, 20.0, 10.0]))
        request = json.loads(await ws.recv())
        asked.append(request.get("max_rate"))
        reply = {"type": "subscribed", "symbols": request["symbols"], "id": request.get("id")}
        await ws.send(json.dumps({**reply, "max_rate": math.nan}))
        await ws.send(ticks(tick(1)))
        await idle(ws)

    async with HostileServer(script) as server:
        client, log = await run_client(server.url, options)
        try:
            await until(lambda: seqs(log) == [1], "a tick after the subscribe")
        finally:
            await client.close()
    assert asked == [20.0] and client.granted_rate is None
    assert client.gate.rejections.totals == {"bad_rate": 5}
    assert len(server.arrivals) == 1


# ------------------------------------------------------- hellos, closes and backoff

RETRY = dataclasses.replace(
    FAST, open_timeout=0.3, backoff_base=0.02, backoff_cap=0.1, stable_after=10.0
)
"""Quick retries for the tests that count reconnects (the default cap is 30 s)."""

BAD_HELLOS: list[tuple[str, str | None, str]] = [
    ("another protocol version", hello(protocol=2), "protocol 2"),
    ("missing fields", json.dumps({"type": "hello", "protocol": 1}), "not a hello"),
    ("heartbeat NaN", hello(heartbeat=math.nan), "heartbeat"),
    ("garbage text", "HTTP/1.1 200 OK lol", "not a hello"),
    ("ticks instead", ticks(tick(1)), "not a hello"),
    ("no hello at all", None, "no hello within"),
]


@pytest.mark.parametrize(
    ("first", "why"), [b[1:] for b in BAD_HELLOS], ids=[b[0] for b in BAD_HELLOS]
)
async def test_a_bad_hello_is_refused_with_growing_backoff(first: str | None, why: str) -> None:
    """A server that does not greet properly is never believed; each retry waits longer."""

    async def script(ws: ServerConnection, index: int) -> None:
        if first is None:
            await ws.wait_closed()  # silence: not even a heartbeat
            return
        await ws.send(first)
        await idle(ws)

    async with HostileServer(script) as server, LoopLag() as lag:
        client, log = await run_client(server.url, RETRY)
        try:
            await server.connections(4, TIMEOUT)
            failed = await log.wait_for(
                StateChanged,
                lambda e: e.state in (ConnectionState.ERROR, ConnectionState.RECONNECTING),
            )
        finally:
            await client.close()
    assert why in failed.detail.lower()
    assert ConnectionState.LIVE not in {e.state for e in log.of(StateChanged)}
    attempts = [e.attempt for e in log.of(StateChanged) if e.state is ConnectionState.CONNECTING]
    assert attempts[:4] == [0, 1, 2, 3]
    assert lag.worst < FREEZE, f"{lag}"


CLOSES = [1000, 1001, 1011, 3000, 4000, 4999, "frame over 64 KiB"]


@pytest.mark.parametrize("close", CLOSES)
async def test_hello_then_close_never_resets_the_backoff(close: int | str) -> None:
    """A server that greets and hangs up (any code, or a frame too big) gets a growing backoff."""

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello())
        if isinstance(close, int):
            await ws.close(close, "go away")
        else:
            await ws.send("x" * (70 * 1024))  # the client closes with 1009
            await ws.wait_closed()

    async with HostileServer(script) as server:
        client, log = await run_client(server.url, RETRY)
        try:
            await server.connections(5, TIMEOUT)
        finally:
            await client.close()
    attempts = [e.attempt for e in log.of(StateChanged) if e.state is ConnectionState.CONNECTING]
    assert attempts[:5] == [0, 1, 2, 3, 4], "the backoff must not reset on a hello"
    code = close if isinstance(close, int) else 1009
    waits = [e for e in log.of(StateChanged) if e.state is ConnectionState.RECONNECTING]
    assert f"code {code}" in waits[0].detail


@pytest.mark.parametrize(("code", "field"), [(1013, "retry_later"), (1008, "policy_wait")])
async def test_try_again_later_and_policy_closes_wait_longer(code: int, field: str) -> None:
    """After 1013 or 1008 the client stays away at least the configured wait, every time."""
    wait = 0.4
    options = dataclasses.replace(RETRY, **{field: wait})

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello())
        await ws.close(code, "later")

    async with HostileServer(script) as server:
        client, log = await run_client(server.url, options)
        try:
            await server.connections(3, TIMEOUT)
        finally:
            await client.close()
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    assert all(gap >= wait for gap in gaps), gaps
    waits = [e.retry_in for e in log.of(StateChanged) if e.state is ConnectionState.RECONNECTING]
    assert all(w is not None and w >= wait for w in waits), waits


async def test_backoff_resets_once_a_connection_stayed_live() -> None:
    """Quick hang-ups grow the backoff; a connection live past stable_after starts it over."""
    options = dataclasses.replace(RETRY, stable_after=0.3)

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello())
        if index == 3:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.6):  # this one lasts: the client should trust again
                    await idle(ws)
        await ws.close(1011, "bye")

    async with HostileServer(script) as server:
        client, log = await run_client(server.url, options)
        try:
            await server.connections(5, TIMEOUT)
        finally:
            await client.close()
    attempts = [e.attempt for e in log.of(StateChanged) if e.state is ConnectionState.CONNECTING]
    assert attempts[:5] == [0, 1, 2, 3, 1]


# ------------------------------------------------------------------- the whole window


def _shows(window: MainWindow, price: float) -> bool:
    (_, _), (y0, y1) = window.chart.pane.plot.vb.viewRange()
    return bool(y0 <= price <= y1)


@pytest.mark.qt_loop
async def test_the_dashboard_stays_truthful_and_responsive_under_poison(
    qapp: QApplication, tmp_path: Path
) -> None:
    """The real window, fed poison beside every good tick: charts hold only the truth, the
    status bar says what was rejected, and Qt's loop is never held 250 ms."""
    good = 400
    poison: list[Callable[[int], str]] = [
        lambda seq: ticks(tick(seq, ts=math.nan)),
        lambda seq: ticks(tick(seq, price=math.inf)),
        lambda seq: ticks(tick(seq, ts=time.time() + 86400 * 365)),
        lambda seq: ticks(tick(seq + 2**40)),
        lambda seq: ticks(tick(2**63)),
        lambda seq: "garbage",
    ]

    go = threading.Event()  # the server thread waits for the window's first paint

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(hello())
        await subscribed(ws)
        await ws.send(ticks(tick(1)))
        assert await asyncio.to_thread(go.wait, TIMEOUT)
        for seq in range(2, good + 1):
            await ws.send(ticks(tick(seq)))
            await ws.send(poison[seq % len(poison)](seq + 1))
            if seq % 20 == 0:
                await asyncio.sleep(0.01)  # a feed, not one burst: the window paints meanwhile
        await idle(ws)

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    async with HostileServer(script) as server:
        window = make_window(server.url, ["AAPL"], settings, FAST)
        try:
            window.resize(1000, 700)
            window.show()
            window.start()
            series = window.store.get("AAPL")
            assert series is not None
            await until(lambda: series.last is not None, "the first tick")
            first = series.last
            await until(lambda: _shows(window, first.price), "the first tick painted")
            async with LoopLag() as lag:  # the window is built: from here on it is the feed
                go.set()
                await until(lambda: series.ticks.last_seq == good, "every good tick")
                last = series.last
                assert last is not None

                await until(lambda: _shows(window, last.price), "the last good price painted")
            (x0, x1), (y0, y1) = window.chart.pane.plot.vb.viewRange()
            label = window.status.rejected_label
            shown = label.isVisibleTo(window.status), label.text(), label.toolTip()
        finally:
            window.close()
            await window.shutdown()
            window.deleteLater()
    assert len(series.ticks) == good and math.isfinite(last.price) and last.seq == good
    assert all(map(math.isfinite, (x0, x1, y0, y1))) and y1 - y0 < 100
    visible, text, tip = shown
    assert visible and "rejected" in text
    for reason in ("not_finite", "ts_future", "seq_jump", "absurd_value", "malformed"):
        assert reason in tip, tip
    assert lag.worst < FREEZE, f"Qt's loop {lag}"
