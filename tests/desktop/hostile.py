"""A small hostile ticker server for the dashboard's tests, and a probe of event-loop lag.

:class:`HostileServer` is websockets' public asyncio server on 127.0.0.1, port 0,
in a thread of its own, that plays a test's script to every connection: a
well-formed hello and subscribed reply when the script asks for them, then
whatever lies it likes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["HostileServer", "LoopLag", "hello", "subscribed", "tick", "ticks"]

Script = Callable[[ServerConnection, int], Awaitable[None]]
"""What the server does with a connection (and its index, from 0); returning closes it."""


def hello(**fields: Any) -> str:
    """A protocol v1 hello, with ``fields`` replaced (None removes a field)."""
    raw: dict[str, Any] = {
        "type": "hello",
        "protocol": 1,
        "server": "hostile 0.0",
        "symbols": ["AAPL", "MSFT"],
        "max_rate": 50.0,
        "heartbeat": 1.0,
        "epoch": "e1",
    }
    raw.update(fields)
    return json.dumps({k: v for k, v in raw.items() if v is not None})


def tick(seq: int, symbol: str = "AAPL", **fields: Any) -> dict[str, Any]:
    """A believable tick stamped now, with ``fields`` replaced."""
    raw: dict[str, Any] = {
        "symbol": symbol,
        "seq": seq,
        "ts": round(time.time(), 6),
        "price": 100.0 + seq % 100 / 100,
        "bid": 99.9,
        "ask": 101.1,
        "size": 100,
        "volume": 100 * seq,
    }
    raw.update(fields)
    return raw


def ticks(*items: dict[str, Any]) -> str:
    """A ticks frame (json.dumps writes NaN and Infinity as a careless server would)."""
    return json.dumps({"type": "ticks", "ticks": list(items)})


async def subscribed(ws: ServerConnection) -> dict[str, Any]:
    """Wait for the client's subscribe, confirm it, and return it."""
    while True:
        request = json.loads(await ws.recv())
        if request.get("type") == "subscribe":
            reply = {"type": "subscribed", "symbols": request["symbols"], "id": request.get("id")}
            await ws.send(json.dumps(reply))
            return dict(request)


class HostileServer:
    """Plays ``script`` to every connection; counts connections and when they came.

    The server runs its own event loop in a thread, as a real server runs in
    another process, so the loop lag a test measures is the client's, not the
    hostile server's work. Use as ``async with HostileServer(script) as server``.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.arrivals: list[float] = []
        """Monotonic time of each connection's arrival."""
        self.errors: list[BaseException] = []
        self.url = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._test_loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None

    async def __aenter__(self) -> HostileServer:
        self._test_loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(ready),))
        self._thread.start()
        self.url = await asyncio.wrap_future(ready)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._thread is not None and self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join)
        assert not self.errors, f"the hostile script failed: {self.errors!r}"

    async def _serve(self, ready: concurrent.futures.Future[str]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        except BaseException as exc:
            ready.set_exception(exc)
            raise
        port = server.sockets[0].getsockname()[1]
        ready.set_result(f"ws://127.0.0.1:{port}")
        await self._stop.wait()
        server.close()
        await server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        index = len(self.arrivals)
        self.arrivals.append(time.monotonic())
        assert self._test_loop is not None and self._arrived is not None
        self._test_loop.call_soon_threadsafe(self._arrived.set)
        try:
            await self.script(ws, index)
        except ConnectionClosed:
            pass  # the client hung up on us: often the point
        except Exception as exc:  # reported at exit, where the test fails
            self.errors.append(exc)

    async def connections(self, count: int, timeout: float) -> None:
        """Wait until ``count`` connections have arrived."""
        assert self._arrived is not None
        async with asyncio.timeout(timeout):
            while True:
                self._arrived.clear()
                if len(self.arrivals) >= count:
                    return
                await self._arrived.wait()


class LoopLag:
    """The event loop's worst lateness while the block runs, measured, not assumed.

    A task asks to wake every ``period`` seconds; how much later than asked it
    wakes is how long something held the loop (a freeze, as the user sees it).
    The longest garbage-collector pass in the window is kept too, to tell a
    failure's cause: a full pass over a big heap holds the loop like any code.
    """

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.worst = 0.0
        self.samples = 0
        self.gc_worst = 0.0
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    def __str__(self) -> str:
        return f"held {self.worst * 1000:.0f} ms (longest GC pass {self.gc_worst * 1000:.0f} ms)"

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.worst = max(self.worst, loop.time() - asked)
            self.samples += 1

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_worst = max(self.gc_worst, time.perf_counter() - self._gc_started)

    async def __aenter__(self) -> LoopLag:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._probe())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        gc.callbacks.remove(self._on_gc)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
