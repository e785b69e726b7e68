"""Record a short client session against a real ticker_server, for the session replay tests.

    python -m tests.desktop.recorded.record_session   # rewrites session.jsonl beside this file

Three connections, as a dashboard would make them: the first subscribes AAPL and MSFT
at 2 updates a second (so the server merges ticks) with a 3-tick snapshot, then asks
for an unknown symbol and stays until a heartbeat came; the second resumes on the same
server with ``since``; the third reaches a restarted server (a new feed epoch). Every
frame each way is one JSON line: ``conn``, ``dir`` ("in" from the server, "out" to
it), ``wall`` (the local clock when it passed) and ``frame`` (its text, as sent).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from ticker_server.app import ServerConfig, TickerServer

OUT = Path(__file__).with_name("session.jsonl")
SYMBOLS = ["AAPL", "MSFT"]


class Recorder:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.conn = 0
        self.last: dict[str, int] = {}

    async def send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        frame = json.dumps(message, separators=(",", ":"))
        self.lines.append({"conn": self.conn, "dir": "out", "wall": time.time(), "frame": frame})
        await ws.send(frame)

    async def recv(self, ws: ClientConnection) -> dict[str, Any]:
        frame = await ws.recv()
        assert isinstance(frame, str)
        self.lines.append({"conn": self.conn, "dir": "in", "wall": time.time(), "frame": frame})
        message: dict[str, Any] = json.loads(frame)
        for tick in message.get("ticks", []):
            self.last[tick["symbol"]] = tick["seq"]
        return message

    async def until(self, ws: ClientConnection, done: Any) -> None:
        """Record frames until ``done(message)`` is true for one of them."""
        async with asyncio.timeout(10):
            while not done(await self.recv(ws)):
                pass


def subscribe(rid: int, symbols: list[str], since: dict[str, int] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "subscribe",
        "symbols": symbols,
        "max_rate": 2.0,
        "snapshot": 3,
        "id": rid,
    }
    if since:
        message["since"] = since
    return message


async def record() -> list[dict[str, Any]]:
    config = ServerConfig(port=0, tick_rate=20.0, seed=11, heartbeat=0.3)
    server = TickerServer(config)
    await server.start()
    rec = Recorder()
    await asyncio.sleep(0.5)  # some history for the snapshot
    rec.conn = 1
    async with connect(server.url, compression=None) as ws:
        await rec.until(ws, lambda m: m["type"] == "hello")
        await rec.send(ws, subscribe(1, SYMBOLS))
        merged = 0

        def merged_ticks(m: dict[str, Any]) -> bool:
            nonlocal merged
            merged += sum(1 for t in m.get("ticks", []) if m["type"] == "ticks" and t.get("merged"))
            return merged >= 2

        await rec.until(ws, merged_ticks)
        await rec.send(ws, subscribe(2, ["NOPE"]))
        await rec.until(ws, lambda m: m["type"] == "error")
        await rec.until(ws, lambda m: m["type"] == "heartbeat")
    await asyncio.sleep(0.5)  # ticks the next connection must resume
    rec.conn = 2
    async with connect(server.url, compression=None) as ws:
        await rec.until(ws, lambda m: m["type"] == "hello")
        await rec.send(ws, subscribe(3, SYMBOLS, dict(rec.last)))
        await rec.until(ws, lambda m: m["type"] == "ticks")
    port = server.port
    await server.stop()
    server = TickerServer(ServerConfig(port=port, tick_rate=20.0, seed=12, heartbeat=0.3))
    await server.start()
    await asyncio.sleep(0.5)
    rec.conn = 3
    async with connect(server.url, compression=None) as ws:
        await rec.until(ws, lambda m: m["type"] == "hello")
        await rec.send(ws, subscribe(4, SYMBOLS))
        await rec.until(ws, lambda m: m["type"] == "ticks")
    await server.stop()
    return rec.lines


def main() -> None:
    lines = asyncio.run(record())
    OUT.write_text("".join(json.dumps(line) + "\n" for line in lines))
    print(f"{len(lines)} frames written to {OUT}")


if __name__ == "__main__":
    main()
