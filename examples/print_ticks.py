"""Print live ticks from a ticker_server with the Qt-free desktop client.

    python examples/print_ticks.py --url ws://127.0.0.1:8765 --symbols AAPL,MSFT [--count 20]

It reconnects (with backoff and resume) if the server goes away; Ctrl+C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time

from ticker_desktop.client import (
    ClientEvent,
    ClientOptions,
    InputRejected,
    ServerError,
    StateChanged,
    TickerClient,
    TicksReceived,
    WatchedSymbols,
)


def show(event: ClientEvent) -> None:
    """Print one line per tick and per connection change."""
    if isinstance(event, TicksReceived):
        source = f"snapshot {event.snapshot}" if event.snapshot else "live"
        for tick in event.ticks:
            stamp = time.strftime("%H:%M:%S", time.localtime(tick.ts))
            merged = f"  merged {tick.merged}" if tick.merged else ""
            print(
                f"{stamp} {tick.symbol:<6} #{tick.seq:<7} {tick.price:>10.2f}"
                f"  bid {tick.bid:.2f} ask {tick.ask:.2f}  size {tick.size}{merged}  [{source}]",
                flush=True,
            )
    elif isinstance(event, StateChanged):
        retry = f" (retry in {event.retry_in:.1f} s)" if event.retry_in is not None else ""
        print(f"-- {event.state.value}: {event.url} {event.detail}{retry}", flush=True)
    elif isinstance(event, ServerError):
        print(f"-- server error {event.error.code}: {event.error.message}", flush=True)
    elif isinstance(event, InputRejected) and not event.quiet:
        print(f"-- rejected {event.count} {event.reason}: {event.detail}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765")
    parser.add_argument("--symbols", default="AAPL,MSFT")
    parser.add_argument(
        "--count", type=int, default=0, help="stop after this many live ticks (0: never)"
    )
    parser.add_argument("--snapshot", type=int, default=5, help="ticks of history to print first")
    args = parser.parse_args()

    done = asyncio.Event()
    live = 0

    def count(event: ClientEvent) -> None:
        nonlocal live
        if isinstance(event, TicksReceived) and event.snapshot is None:
            live += len(event.ticks)
            if args.count and live >= args.count:
                done.set()

    # The symbols to stream are one shared set: edit it (add/remove) and the client follows.
    watched = WatchedSymbols(args.symbols.split(","))
    client = TickerClient(args.url, ClientOptions(snapshot=args.snapshot), watched=watched)
    client.add_listener(show)
    client.add_listener(count)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, done.set)
    client.start()
    try:
        await done.wait()
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
