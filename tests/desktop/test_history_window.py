"""The dashboard opens full: bars from a real server with a backfill, drawn, paged, refilled."""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from ticker_desktop.bars import BarArrays
from ticker_desktop.client import ConnectionState, StateChanged
from ticker_desktop.history import BarHistory
from ticker_desktop.main_window import MainWindow
from ticker_desktop.pane import PricePane

from .conftest import TIMEOUT, until
from .test_window import Desk

pytestmark = pytest.mark.qt_loop

HOUR = 3600.0


@pytest.fixture
def desk(qapp: QApplication, tmp_path: Path) -> Iterator[Desk]:
    desk = Desk(tmp_path)
    yield desk
    assert desk.exited, "use the desk as 'async with desk:' inside the test"


def show_candles(window: MainWindow, interval: float) -> None:
    window.mode_box.setCurrentIndex(window.mode_box.findData("candles"))
    window.interval_box.setCurrentIndex(window.interval_box.findData(interval))


def held(window: MainWindow, symbol: str, interval: float) -> dict[str, np.ndarray]:
    series = window.store.get(symbol)
    assert series is not None
    candles = series.candles[interval]
    return {n: candles.column(n).copy() for n in ("t", "open", "high", "low", "close", "volume")}


async def server_bars(window: MainWindow, symbol: str, interval: int, limit: int) -> BarArrays:
    return await window.client.bars(symbol, interval, limit)


def assert_closed_bars_equal(mine: dict[str, np.ndarray], theirs: BarArrays, before: float) -> int:
    """Every server bar that closed before ``before`` (wall time) is held, field for field.

    A bar still forming at the last load is left out: the chart asks for it again only
    after it closes. Returns how many bars were compared.
    """
    closed = theirs.select(theirs.t + theirs.interval <= before)
    index = np.searchsorted(mine["t"], closed.t)
    assert np.all(index < len(mine["t"])), "a server bar is missing"
    assert np.array_equal(mine["t"][index], closed.t), "a server bar is missing"
    for name in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(mine[name][index], getattr(closed, name)), name
    return len(closed)


async def loaded(history: BarHistory, count: int) -> None:
    """Wait until ``count`` pages have been merged (bounded by the tests' timeout)."""
    async with asyncio.timeout(TIMEOUT):
        await history.wait_loaded(count)


async def test_first_chart_opens_with_the_backfilled_hours(desk: Desk) -> None:
    """Right after the window goes live, the chart holds and shows >= the backfill of 1-min bars."""
    async with desk:
        server = await desk.server(backfill=2 * HOUR)
        opened = time.time()
        window = desk.window(server.url, ["AAPL"])
        show_candles(window, 60.0)
        await until(lambda: len(held(window, "AAPL", 60.0)["t"]) >= 120, "2 h of 1-min candles")
        mine = held(window, "AAPL", 60.0)
        assert mine["t"][-1] - mine["t"][0] >= 2 * HOUR - 120
        assert np.all(np.diff(mine["t"]) > 0), "one candle per minute, ascending"
        theirs = await server_bars(window, "AAPL", 60, 1000)
        assert assert_closed_bars_equal(held(window, "AAPL", 60.0), theirs, opened) >= 115
        await until(lambda: window.chart.pane.candles.series is not None, "candles drawn")
        window._refresh_charts(force=True)
        (x0, x1), _ = window.chart.pane.plot.vb.viewRange()
        assert x1 - x0 >= 2 * HOUR, "the view spans the history, not only the live minutes"


async def test_interval_switch_redraws_from_history(desk: Desk) -> None:
    """Switching to 5-minute candles loads that width's bars: the view fills at once."""
    async with desk:
        server = await desk.server(backfill=2 * HOUR)
        opened = time.time()
        window = desk.window(server.url, ["AAPL"])
        show_candles(window, 60.0)
        await until(lambda: len(held(window, "AAPL", 60.0)["t"]) >= 120, "1-min history")
        show_candles(window, 300.0)
        await until(lambda: len(held(window, "AAPL", 300.0)["t"]) >= 24, "2 h of 5-min candles")
        theirs = await server_bars(window, "AAPL", 300, 1000)
        assert assert_closed_bars_equal(held(window, "AAPL", 300.0), theirs, opened) >= 22


async def test_panning_left_loads_the_previous_page(desk: Desk) -> None:
    """Panning past the oldest candle asks for the page before it, which joins in front."""
    async with desk:
        server = await desk.server(backfill=2 * HOUR)
        opened = time.time()
        window = desk.window(server.url, ["AAPL"])
        window.bridge.history.page = 50
        show_candles(window, 60.0)
        await until(lambda: len(held(window, "AAPL", 60.0)["t"]) >= 50, "the newest page")
        oldest = held(window, "AAPL", 60.0)["t"][0]
        loads = window.bridge.history.loads
        pane = window.chart.pane
        pane.plot.vb.setXRange(oldest - 30 * 60, oldest + 30 * 60, padding=0)
        pane._user_moved()
        await loaded(window.bridge.history, loads + 1)
        mine = held(window, "AAPL", 60.0)
        assert mine["t"][0] == oldest - 50 * 60, "one more page of 50 minutes in front"
        assert np.all(np.diff(mine["t"]) == 60), "no hole or duplicate at the seam"
        theirs = await server_bars(window, "AAPL", 60, 1000)
        paged = theirs.select(theirs.t >= mine["t"][0])
        assert assert_closed_bars_equal(mine, paged, opened) >= 95


class Relay:
    """A TCP relay between a window and a server that can be cut, as a network outage is.

    The server keeps running (its bars stay those of one feed); the window's
    connection drops and its reconnects are refused until :meth:`restore`.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.blocked = False
        self._pipes: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    async def cut(self) -> None:
        self.blocked = True
        pipes = list(self._pipes)
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    def restore(self) -> None:
        self.blocked = False

    async def close(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_reconnect_fills_the_outage_with_bars(desk: Desk) -> None:
    """Candles of an outage longer than the server's tick history come back as its bars."""
    async with desk:
        # 20 ticks of history per symbol: a 3 s outage at 50 ticks/s outlasts any resume.
        server = await desk.server(backfill=0.5 * HOUR, tick_rate=50.0, history=20)
        relay = Relay(server.port)
        window = desk.window(await relay.start(), ["AAPL"])
        try:
            show_candles(window, 1.0)
            log = desk.logs[window]
            await log.wait_for(StateChanged, lambda e: e.state is ConnectionState.LIVE)
            await loaded(window.bridge.history, 1)
            await relay.cut()
            start = len(log.events)
            await log.wait_for(StateChanged, lambda e: e.state is ConnectionState.RECONNECTING)
            cut_at = time.time()
            await asyncio.sleep(3.0)  # the outage itself, not a synchronisation
            loads = window.bridge.history.loads
            restored = time.time()
            relay.restore()
            await log.wait_for(StateChanged, lambda e: e.state is ConnectionState.LIVE, start=start)
            # The refill loads both widths this chart has asked for (1 min at open, then 1 s),
            # in either order: wait for both pages, not the first.
            await loaded(window.bridge.history, loads + 2)
            mine = held(window, "AAPL", 1.0)
            outage = (mine["t"] > cut_at) & (mine["t"] < cut_at + 2.0)
            assert np.count_nonzero(outage) >= 2, "the outage's seconds have candles"
            theirs = await server_bars(window, "AAPL", 1, 1000)
            newer = theirs.select(theirs.t >= mine["t"][0])
            compared = assert_closed_bars_equal(mine, newer, restored)
            assert compared >= 100
        finally:
            await relay.close()


async def test_bars_csv(desk: Desk, tmp_path: Path) -> None:
    """The bars CSV holds every candle of the width shown, oldest first, with the server's values."""
    async with desk:
        server = await desk.server(backfill=1 * HOUR)
        window = desk.window(server.url, ["AAPL"])
        show_candles(window, 60.0)
        await until(lambda: len(held(window, "AAPL", 60.0)["t"]) >= 60, "1 h of 1-min candles")
        path = tmp_path / "bars.csv"
        rows = window.export_bars_csv("AAPL", 60.0, path)
        table = list(csv.DictReader(path.read_text().splitlines()))
        assert len(table) == rows >= 60
        mine = held(window, "AAPL", 60.0)
        assert [float(r["t"]) for r in table] == mine["t"][:rows].tolist()
        assert [float(r["close"]) for r in table] == mine["close"][:rows].tolist()
        assert table[0]["symbol"] == "AAPL" and table[0]["interval"] == "60"


def drawn_closes(pane: PricePane) -> int:
    x = pane.bar_line.xData  # all of it (getData gives what is clipped to the view)
    return 0 if x is None else len(x)


async def test_line_chart_draws_bar_closes_where_it_has_no_ticks(desk: Desk) -> None:
    """In line mode the 1-minute closes before the first tick are drawn, at each bar's end."""
    async with desk:
        server = await desk.server(backfill=1 * HOUR)
        window = desk.window(server.url, ["AAPL"])
        window.mode_box.setCurrentIndex(window.mode_box.findData("line"))
        await until(lambda: len(held(window, "AAPL", 60.0)["t"]) >= 60, "1 h of 1-min bars")
        pane = window.chart.pane
        await until(lambda: drawn_closes(pane) >= 59, "the closes drawn")
        x, y = pane.bar_line.xData, pane.bar_line.yData
        assert x is not None and y is not None
        series = window.store.get("AAPL")
        assert series is not None
        assert x[-1] <= series.ticks.ts[0], "only where there are no ticks"
        bars = held(window, "AAPL", 60.0)
        index = np.searchsorted(bars["t"] + 60, x)
        assert np.array_equal(bars["close"][index], y)
        pane.plot.vb.setXRange(x[0], x[-1], padding=0)
        pane._user_moved()
        (_, _), (y0, y1) = pane.plot.vb.viewRange()
        assert y0 <= y.min() and y.max() <= y1, "the price axis fits the closes in view"
