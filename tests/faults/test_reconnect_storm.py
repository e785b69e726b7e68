"""The server killed under 200 reconnecting clients: all come back, spread out by their jitter."""

from __future__ import annotations

import asyncio
import socket
import statistics
from collections.abc import Callable

from ticker_desktop.client import ClientOptions, ConnectionState, StateChanged, TickerClient
from ticker_desktop.events import ClientEvent

from ..servers import ServerProcess, SpawnServer
from ..timing import MS, TIMEOUT

CLIENTS = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_sigkill_under_200_clients_they_all_return_spread_out(
    spawn_server: SpawnServer,
) -> None:
    """After SIGKILL and a restart every client is live again, and their reconnects are spread in time."""
    port = free_port()

    async def start_server() -> ServerProcess:
        return await spawn_server(
            "--port", str(port), "--tick-rate", "2", "--max-connections", "1000"
        )

    server = await start_server()
    loop = asyncio.get_running_loop()
    live: set[int] = set()
    back: dict[int, float] = {}
    all_live, none_live, all_back = asyncio.Event(), asyncio.Event(), asyncio.Event()
    options = ClientOptions(
        max_rate=1.0, snapshot=0, ping_interval=5.0, backoff_base=0.5, backoff_cap=4.0
    )
    clients = [TickerClient(f"ws://127.0.0.1:{port}", options) for _ in range(CLIENTS)]
    killed_at = 0.0

    def watch(index: int) -> Callable[[ClientEvent], None]:
        def on_event(event: ClientEvent) -> None:
            if not isinstance(event, StateChanged):
                return
            if event.state is ConnectionState.LIVE:
                live.add(index)
                if killed_at:
                    back.setdefault(index, loop.time())
            else:
                live.discard(index)
            if len(live) == CLIENTS:
                all_live.set()
            if not live:
                none_live.set()
            if len(back) == CLIENTS:
                all_back.set()

        return on_event

    for index, client in enumerate(clients):
        client.add_listener(watch(index))
        await client.subscribe(["AAPL"])
        client.start()
    try:
        await asyncio.wait_for(all_live.wait(), TIMEOUT * 4)
        none_live.clear()
        await server.kill()
        killed_at = loop.time()
        await asyncio.wait_for(none_live.wait(), TIMEOUT * 2)
        await start_server()
        up_at = loop.time()
        await asyncio.wait_for(all_back.wait(), 30_000 * MS)
        delays = sorted(t - up_at for t in back.values())
        # Full jitter: the returns are spread over the backoff window, not one burst.
        assert statistics.pstdev(delays) > 0.1, delays[:10]
        buckets = {int(d / 0.1) for d in delays}
        assert len(buckets) >= 8, f"reconnects fell into only {len(buckets)} 100 ms slots"
        # The backoff caps at 4 s: every client is back within one window and a slow connect.
        assert max(delays) < 10_000 * MS, delays[-10:]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
