"""``ticker-server``: flags, logging and signal handling around :class:`~.app.TickerServer`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from .config import ServerConfig, redact_url
from .market import listings_for
from .protocol import json_schema

__all__ = ["main", "parse_args"]

log = logging.getLogger("ticker_server")


def _positive(kind: type[float] | type[int]) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _duration(text: str) -> float:
    from .backfill import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {text}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticker-server",
        description="Stream a simulated stock market over WebSocket (protocol v1). "
        "Without a role it runs feed and gateway in one process; with --broker, "
        "'feed' publishes to Redis and 'gateway' serves clients from it.",
    )
    parser.add_argument(
        "role", nargs="?", choices=["feed", "gateway"], help="run one side only (needs --broker)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=_port, default=8765, help="port (default 8765; 0 picks a free one)"
    )
    parser.add_argument(
        "--symbols", help="comma-separated symbols (default: a universe of 20 large US stocks)"
    )
    parser.add_argument(
        "--tick-rate",
        type=_positive(float),
        default=5.0,
        help="mean ticks/s per symbol (default 5)",
    )
    parser.add_argument(
        "--seed", type=int, help="random seed: the same seed gives the same prices and sizes"
    )
    parser.add_argument(
        "--max-rate",
        type=_non_negative,
        default=50.0,
        help="cap on updates/s per symbol per client (default 50; 0: no cap)",
    )
    parser.add_argument(
        "--history", type=_positive(int), default=1000, help="ticks kept per symbol for snapshots"
    )
    parser.add_argument(
        "--backfill",
        type=_duration,
        default="6.5h",
        help="history generated before going live, e.g. 6.5h, 90m, 0 (default 6.5h)",
    )
    parser.add_argument(
        "--bar-retention",
        type=_duration,
        default="6.5h",
        help="bars kept at every interval, as a duration (default 6.5h, one session)",
    )
    parser.add_argument(
        "--heartbeat", type=_positive(float), default=5.0, help="idle seconds before a heartbeat"
    )
    parser.add_argument(
        "--max-symbols", type=_positive(int), default=200, help="symbols per connection (200)"
    )
    parser.add_argument(
        "--max-buffer",
        type=_positive(int),
        default=32 * 1024,
        help="bytes buffered for a client above which it is treated as slow (32768)",
    )
    parser.add_argument(
        "--slow-grace",
        type=_positive(float),
        default=30.0,
        help="seconds a slow client may stay above --max-buffer before close 1013 (30)",
    )
    parser.add_argument(
        "--sndbuf",
        type=_positive(int),
        help="SO_SNDBUF of client sockets in bytes (default: kernel autotuning, up to ~4 MB)",
    )
    parser.add_argument(
        "--max-connections", type=_positive(int), default=10_000, help="beyond it: HTTP 503"
    )
    parser.add_argument(
        "--request-rate", type=_positive(float), default=20.0, help="requests/s per client (20)"
    )
    parser.add_argument(
        "--request-burst", type=_positive(float), default=50.0, help="request burst per client (50)"
    )
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        help="accepted bearer token (repeatable; also TICKER_TOKEN, comma-separated)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="accepted browser Origin (repeatable); clients sending no Origin are still accepted",
    )
    parser.add_argument(
        "--require-origin",
        action="store_true",
        help="with --allow-origin, also refuse clients that send no Origin header",
    )
    parser.add_argument("--certfile", help="TLS certificate (PEM): serve wss://")
    parser.add_argument("--keyfile", help="TLS private key (PEM)")
    parser.add_argument("--compression", action="store_true", help="enable permessage-deflate")
    parser.add_argument("--broker", help="redis://HOST:PORT/DB: publish to or read from Redis")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--print-schema", action="store_true", help="print the protocol's JSON Schema and exit"
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[ServerConfig, argparse.Namespace]:
    """Parse flags into a config; exits with a clear message on bad input."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    symbols: tuple[str, ...] | None = None
    if args.symbols is not None:
        try:
            symbols = tuple(
                item.symbol for item in listings_for(args.symbols.split(","), args.seed)
            )
        except ValueError as exc:
            parser.error(f"--symbols: {exc}")
    if args.broker and urlsplit(args.broker).scheme not in ("redis", "rediss", "unix"):
        parser.error("--broker must be a redis://, rediss:// or unix:// URL")
    if args.role and not args.broker:
        parser.error(f"the '{args.role}' role needs --broker redis://HOST:PORT/DB")
    if args.require_origin and not args.allow_origin:
        parser.error("--require-origin needs --allow-origin")
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    tokens = list(args.token)
    tokens += [t for t in os.environ.get("TICKER_TOKEN", "").split(",") if t.strip()]
    config = ServerConfig(
        host=args.host,
        port=args.port,
        symbols=symbols,
        tick_rate=args.tick_rate,
        seed=args.seed,
        max_rate=args.max_rate,
        history=args.history,
        heartbeat=args.heartbeat,
        max_symbols=args.max_symbols,
        max_buffer=args.max_buffer,
        slow_grace=args.slow_grace,
        sndbuf=args.sndbuf,
        request_rate=args.request_rate,
        request_burst=args.request_burst,
        max_connections=args.max_connections,
        tokens=tuple(t.strip() for t in tokens),
        allow_origins=tuple(args.allow_origin),
        require_origin=args.require_origin,
        certfile=args.certfile,
        keyfile=args.keyfile,
        compression=args.compression,
        broker=args.broker,
        role=args.role or "all",
        backfill=args.backfill,
        bar_retention=args.bar_retention,
    )
    return config, args


async def _run(config: ServerConfig) -> None:
    from .app import TickerServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = TickerServer(config)
    starting = asyncio.ensure_future(server.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        # A gateway may wait long for a feed to announce itself: a signal must still stop it.
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            if config.role == "feed":
                log.info("feed publishing to %s", redact_url(config.broker or ""))
            await stopping
        log.info("shutting down")
    finally:
        for task in (starting, stopping):
            task.cancel()
        await asyncio.gather(starting, stopping, return_exceptions=True)
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    config, args = parse_args(argv)
    if args.print_schema:
        json.dump(json_schema(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # websockets logs request lines at DEBUG, and a request line may carry ?token=...
    logging.getLogger("websockets").setLevel(
        max(logging.INFO, logging.getLevelName(args.log_level))
    )
    from .app import StartupError

    try:
        asyncio.run(_run(config))
    except (StartupError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
