"""A deliberately naive protocol v1 server: the broadcast loop of tutorials, as a baseline.

Fed by the same :class:`ticker_server.market.Market` as the real server, it sends each
tick to each subscribed client with its own awaited ``send``: no conflation, no
coalescing, no throttling, and a slow client delays everyone. It speaks just enough of
protocol v1 for ticker-bench: hello, subscribe/unsubscribe, ping and ticks.

Run: ``python -m benchmarks.naive_server --port 0 --tick-rate 50``; it logs
``serving ws://127.0.0.1:PORT`` on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ticker_server.market import Market, listings_for
from ticker_server.protocol import MAX_FRAME, PROTOCOL_VERSION

__all__ = ["NaiveServer", "main"]

log = logging.getLogger("benchmarks.naive_server")


class NaiveServer:
    """One awaited send per tick per client, straight from the feed loop."""

    def __init__(self, make_market: Callable[[], Market], wait_clients: int = 0) -> None:
        self.make_market = make_market
        self.market = make_market()
        self.wait_clients = wait_clients
        self.ready = asyncio.Event()
        self.symbols = [listing.symbol for listing in self.market.listings]
        self.clients: dict[ServerConnection, set[str]] = {}
        self.hello = json.dumps(
            {
                "type": "hello",
                "protocol": PROTOCOL_VERSION,
                "server": "naive baseline",
                "symbols": self.symbols,
                "max_rate": 0,
                "heartbeat": 3600,
            }
        )

    async def handler(self, ws: ServerConnection) -> None:
        subscribed: set[str] = set()
        await ws.send(self.hello)
        self.clients[ws] = subscribed
        try:
            async for message in ws:
                request = json.loads(message)
                kind, rid = request.get("type"), request.get("id")
                if kind in ("subscribe", "unsubscribe"):
                    chosen = {s for s in request.get("symbols", []) if s in self.symbols}
                    if kind == "subscribe":
                        subscribed |= chosen
                        if sum(1 for s in self.clients.values() if s) >= self.wait_clients:
                            self.ready.set()
                    else:
                        subscribed -= chosen
                    reply = {"type": f"{kind}d", "symbols": sorted(subscribed), "id": rid}
                    await ws.send(json.dumps(reply))
                elif kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "ts": time.time(), "id": rid}))
        except (ConnectionClosed, ValueError, AttributeError):
            pass
        finally:
            del self.clients[ws]

    async def feed(self) -> None:
        """The tutorial broadcast loop: for each tick, for each client, await send."""
        if self.wait_clients:
            # Under load this loop starves the handshakes (a send into a socket with room
            # never yields), so the baseline holds its feed until the clients are all in.
            await self.ready.wait()
            self.market = self.make_market()  # start the clock now: no backlog to catch up on
        while True:
            await asyncio.sleep(max(self.market.next_arrival() - time.time(), 0.0))
            for tick in self.market.advance(time.time()):
                message = json.dumps(
                    {"type": "ticks", "ticks": [tick.model_dump(exclude_none=True)]},
                    separators=(",", ":"),
                )
                for ws, subscribed in list(self.clients.items()):
                    if tick.symbol in subscribed:
                        try:
                            await ws.send(message)
                        except ConnectionClosed:
                            pass


async def _serve(args: argparse.Namespace) -> None:
    symbols = args.symbols.split(",") if args.symbols else None
    listings = listings_for(symbols, args.seed)

    def make_market() -> Market:
        return Market(
            listings,
            tick_rate=args.tick_rate,
            start=time.time(),
            rng=np.random.default_rng(args.seed),
        )

    server = NaiveServer(make_market, args.wait_clients)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(server.handler, args.host, args.port, max_size=MAX_FRAME) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        log.info("serving ws://%s:%d", args.host, port)
        feed = loop.create_task(server.feed())
        await stop.wait()
        feed.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="naive_server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--symbols", help="comma list (default: the built-in universe)")
    parser.add_argument("--tick-rate", type=float, default=5.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--wait-clients", type=int, default=0, help="hold the feed until this many have subscribed"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
