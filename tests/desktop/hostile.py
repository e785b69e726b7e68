"""A small hostile ticker server for the dashboard's tests, and a probe of event-loop lag.

:class:`HostileServer` is websockets' public asyncio server on 127.0.0.1, port 0,
that plays a test's script to every connection: a well-formed hello and
subscribed reply when the script asks for them, then whatever lies it likes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
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

    Use as ``async with HostileServer(script) as server``; ``server.url`` is the address.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.arrivals: list[float] = []
        """Monotonic time of each connection's arrival."""
        self.errors: list[BaseException] = []
        self._arrived = asyncio.Condition()
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> HostileServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        assert not self.errors, f"the hostile script failed: {self.errors!r}"

    async def _handle(self, ws: ServerConnection) -> None:
        index = len(self.arrivals)
        async with self._arrived:
            self.arrivals.append(time.monotonic())
            self._arrived.notify_all()
        try:
            await self.script(ws, index)
        except ConnectionClosed:
            pass  # the client hung up on us: often the point
        except Exception as exc:  # reported at exit, where the test fails
            self.errors.append(exc)

    async def connections(self, count: int, timeout: float) -> None:
        """Wait until ``count`` connections have arrived."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.arrivals) >= count)


class LoopLag:
    """The event loop's worst lateness while the block runs, measured, not assumed.

    A task asks to wake every ``period`` seconds; how much later than asked it
    wakes is how long something held the loop (a freeze, as the user sees it).
    """

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.worst = 0.0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.worst = max(self.worst, loop.time() - asked)
            self.samples += 1

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._probe())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
