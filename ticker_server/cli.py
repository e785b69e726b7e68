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
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from .config import SESSION, ServerConfig, redact_url
from .market import listings_for
from .protocol import json_schema

__all__ = ["CLI_DEFAULTS", "main", "parse_args"]

log = logging.getLogger("ticker_server")

CLI_DEFAULTS = ServerConfig(backfill=SESSION)
"""What ``ticker-server`` runs with: ServerConfig's defaults, and a session of history (an
embedded server, as in tests, starts without one unless asked)."""


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


class _ConfigFlags:
    """Adds flags whose default is a :class:`ServerConfig` field, so each default is written once.

    Each flag's ``dest`` is its field's name; :meth:`values` reads them all back
    for :func:`dataclasses.replace`.
    """

    def __init__(self, parser: argparse.ArgumentParser, defaults: ServerConfig) -> None:
        self.parser = parser
        self.defaults = defaults
        self.fields: list[str] = []

    def add(self, flag: str, text: str, *, field: str | None = None, **kwargs: Any) -> None:
        """Add ``flag`` for ``field`` (by default the flag's name with ``_`` for ``-``).

        A bool field gets ``--flag/--no-flag``, a tuple field a repeatable flag (or, with
        ``action='store'``, one comma-separated value).
        """
        name = field or flag.removeprefix("--").replace("-", "_")
        default = getattr(self.defaults, name)
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.setdefault("metavar", flag.removeprefix("--").replace("-", "_").upper())
        if isinstance(default, tuple) and "action" not in kwargs:
            kwargs["action"] = "append"
            default = list(default)  # argparse appends to a copy of it
        elif isinstance(default, tuple):
            default = ",".join(default)  # as it would be typed, and parsed as if it was
        if default not in (None, []):
            text += " (default %(default)s)"
        self.parser.add_argument(flag, dest=name, default=default, help=text, **kwargs)
        self.fields.append(name)

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        return {name: getattr(args, name) for name in self.fields}


def _build_parser(defaults: ServerConfig) -> tuple[argparse.ArgumentParser, _ConfigFlags]:
    parser = argparse.ArgumentParser(
        prog="ticker-server",
        description="Stream a simulated stock market over WebSocket (protocol v1). "
        "Without a role it runs feed and gateway in one process; with --broker, "
        "'feed' publishes to Redis and 'gateway' serves clients from it.",
    )
    parser.add_argument(
        "role", nargs="?", choices=["feed", "gateway"], help="run one side only (needs --broker)"
    )
    flags = _ConfigFlags(parser, defaults)
    flag = flags.add
    flag("--host", "address to listen on")
    flag("--port", "port; 0 picks a free one", type=_port)
    flag(
        "--symbols",
        "comma-separated symbols; none: a universe of 20 large US stocks",
        action="store",
    )
    flag("--tick-rate", "mean ticks/s per symbol", type=_positive(float))
    flag("--seed", "random seed: the same seed gives the same prices and sizes", type=int)
    flag("--max-rate", "cap on updates/s per symbol per client; 0: no cap", type=_non_negative)
    flag("--history", "ticks kept per symbol for snapshots", type=_positive(int))
    flag(
        "--backfill",
        "seconds (or 6.5h, 90m) of history made before going live; 0: none",
        type=_duration,
    )
    flag("--bar-retention", "seconds (or 6.5h) of bars kept at every interval", type=_duration)
    flag("--heartbeat", "idle seconds before a heartbeat", type=_positive(float))
    flag("--max-symbols", "symbols per connection", type=_positive(int))
    flag(
        "--max-buffer",
        "bytes buffered for a client above which it is treated as slow",
        type=_positive(int),
    )
    flag(
        "--slow-grace",
        "seconds a slow client may stay above --max-buffer before close 1013",
        type=_positive(float),
    )
    flag(
        "--sndbuf",
        "SO_SNDBUF of client sockets in bytes (default: kernel autotuning, up to ~4 MB)",
        type=_positive(int),
    )
    flag("--max-connections", "connections beyond which HTTP 503 is answered", type=_positive(int))
    flag("--request-rate", "requests/s per client", type=_positive(float))
    flag("--request-burst", "request burst per client", type=_positive(float))
    flag(
        "--token",
        "accepted bearer token (repeatable; also TICKER_TOKEN, comma-separated)",
        field="tokens",
    )
    flag(
        "--allow-origin",
        "accepted browser Origin (repeatable); clients sending no Origin are still accepted",
        field="allow_origins",
    )
    flag("--require-origin", "with --allow-origin, also refuse clients that send no Origin header")
    flag("--certfile", "TLS certificate (PEM): serve wss://")
    flag("--keyfile", "TLS private key (PEM)")
    flag("--compression", "permessage-deflate compression")
    flag("--broker", "redis://HOST:PORT/DB: publish to or read from Redis")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--print-schema", action="store_true", help="print the protocol's JSON Schema and exit"
    )
    return parser, flags


def parse_args(
    argv: Sequence[str] | None = None, defaults: ServerConfig | None = None
) -> tuple[ServerConfig, argparse.Namespace]:
    """Parse flags into a config; exits with a clear message on bad input.

    Args:
        argv: the flags (default: ``sys.argv[1:]``).
        defaults: what an absent flag means (default: :data:`CLI_DEFAULTS`).
    """
    defaults = defaults or CLI_DEFAULTS
    parser, flags = _build_parser(defaults)
    args = parser.parse_args(argv)
    values = flags.values(args)
    if isinstance(values["symbols"], str):
        try:
            values["symbols"] = tuple(
                item.symbol for item in listings_for(values["symbols"].split(","), args.seed)
            )
        except ValueError as exc:
            parser.error(f"--symbols: {exc}")
    if args.broker and urlsplit(args.broker).scheme not in ("redis", "rediss", "unix"):
        parser.error("--broker must be a redis://, rediss:// or unix:// URL")
    if args.role and not args.broker:
        parser.error(f"the '{args.role}' role needs --broker redis://HOST:PORT/DB")
    if args.require_origin and not args.allow_origins:
        parser.error("--require-origin needs --allow-origin")
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    tokens = list(args.tokens)
    tokens += [t for t in os.environ.get("TICKER_TOKEN", "").split(",") if t.strip()]
    values["tokens"] = tuple(t.strip() for t in tokens)
    values["allow_origins"] = tuple(args.allow_origins)
    config = replace(defaults, **values, role=args.role or defaults.role)
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
