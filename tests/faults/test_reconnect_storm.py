"""The server killed under 200 reconnecting clients: all come back, spread out by their jitter."""

from __future__ import annotations

import asyncio
import signal
import socket
import statistics
from collections.abc import Callable

from ticker_desktop.client import ClientOptions, ConnectionState, StateChanged, TickerClient
from ticker_desktop.events import ClientEvent

from ..server.conftest import TIMEOUT
from ..server.test_cli import _no_orphans, spawn_server  # noqa: F401 - the fixture kills leftovers

CLIENTS = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_server(port: int) -> asyncio.subprocess.Process:
    proc, _ = await spawn_server(
        "--port", str(port), "--tick-rate", "2", "--max-connections", "1000"
    )
    return proc


async def test_sigkill_under_200_clients_they_all_return_spread_out() -> None:
    """After SIGKILL and a restart every client is live again, and their reconnects are spread in time."""
    port = free_port()
    server = await start_server(port)
    loop = asyncio.get_running_loop()
    back: dict[int, float] = {}
    lost = asyncio.Event()
    options = ClientOptions(
        max_rate=1.0, snapshot=0, ping_interval=5.0, backoff_base=0.5, backoff_cap=4.0
    )
    clients = [TickerClient(f"ws://127.0.0.1:{port}", options) for _ in range(CLIENTS)]
    killed_at = 0.0

    def watch(index: int) -> Callable[[ClientEvent], None]:
        def on_event(event: ClientEvent) -> None:
            if (
                isinstance(event, StateChanged)
                and event.state is ConnectionState.LIVE
                and killed_at
            ):
                back.setdefault(index, loop.time())
                if len(back) == CLIENTS:
                    lost.set()

        return on_event

    for index, client in enumerate(clients):
        client.add_listener(watch(index))
        await client.subscribe(["AAPL"])
        client.start()
    restarted: asyncio.subprocess.Process | None = None
    try:
        async with asyncio.timeout(TIMEOUT * 4):
            while not all(c.state is ConnectionState.LIVE for c in clients):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        await server.wait()
        killed_at = loop.time()
        async with asyncio.timeout(TIMEOUT * 2):
            while any(c.state is ConnectionState.LIVE for c in clients):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        restarted = await start_server(port)
        up_at = loop.time()
        await asyncio.wait_for(lost.wait(), 30)
        delays = sorted(t - up_at for t in back.values())
        # Full jitter: the returns are spread over the backoff window, not one burst.
        assert statistics.pstdev(delays) > 0.1, delays[:10]
        buckets = {int(d / 0.1) for d in delays}
        assert len(buckets) >= 8, f"reconnects fell into only {len(buckets)} 100 ms slots"
        assert max(delays) < 10.0
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        for proc in (server, restarted):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await proc.wait()
