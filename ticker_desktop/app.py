"""``ticker-desktop``: flags, settings, the optional demo feed, and one qasync event loop.

Qt and asyncio share one loop (qasync); there are no networking threads.
``--demo`` starts ``python -m ticker_server --port 0`` as a child process (so
the simulated feed runs on another core), reads the URL it logs, connects to
it, and stops it with SIGTERM when the window closes.

This is the composition root: :func:`make_bridge` wires the client and the store
around one :class:`~.watched.WatchedSymbols`, and :func:`make_window` hands that to
the window; tests and benchmarks build their windows through it too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QSettings
from PySide6.QtWidgets import QApplication

from . import preflight
from .bridge import ClientBridge
from .client import ClientOptions, TickerClient
from .credentials import saved_token
from .main_window import DEFAULT_SYMBOLS, DEFAULT_URL, MainWindow, dashboard_options
from .store import MarketStore
from .theme import apply_dark_theme
from .watched import WatchedSymbols

__all__ = ["DemoServer", "main", "make_bridge", "make_window", "parse_args", "run"]

log = logging.getLogger("ticker_desktop")

_SERVING = re.compile(r"serving (wss?://\S+)")


class DemoServer:
    """A ticker_server child process on a free port, for ``--demo``.

    The child's stderr is read through the event loop (no helper threads: a
    thread still inside Qt when the interpreter exits can abort the process),
    and its end of file is how the exit is noticed.

    Args:
        extra: more ``ticker-server`` flags (e.g. ``["--tick-rate", "20"]``).
        start_timeout: seconds to wait for the server's "serving" line.
    """

    def __init__(self, extra: Sequence[str] = (), start_timeout: float = 20.0) -> None:
        self.extra = list(extra)
        self.start_timeout = start_timeout
        self.url: str | None = None
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Start the server and return its URL.

        Raises:
            RuntimeError: the server exited or did not report its URL in time.
        """
        self._proc = proc = self._launch()
        assert proc.stderr is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), proc.stderr
        )
        seen: list[str] = []
        try:
            async with asyncio.timeout(self.start_timeout):
                while self.url is None:
                    raw = await reader.readline()
                    if not raw:
                        raise RuntimeError(
                            "the demo server exited: " + (" | ".join(seen[-5:]) or "no output")
                        )
                    line = raw.decode(errors="replace").rstrip()
                    seen.append(line)
                    match = _SERVING.search(line)
                    if match:
                        self.url = match.group(1)
        except BaseException:
            await self.stop()
            raise
        # Keep reading its log so the pipe never fills and blocks the server.
        self._drain = loop.create_task(self._forward(reader))
        log.info("demo server (pid %d) serving %s", proc.pid, self.url)
        return self.url

    def _launch(self) -> subprocess.Popen[bytes]:
        # Popen returns once the child is forked; only the waiting is done through the loop.
        return subprocess.Popen(
            [sys.executable, "-m", "ticker_server", "--port", "0", *self.extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def _forward(self, reader: asyncio.StreamReader) -> None:
        demo_log = logging.getLogger("ticker_desktop.demo")
        while raw := await reader.readline():
            demo_log.debug("%s", raw.decode(errors="replace").rstrip())

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the server and wait until it exits (SIGKILL after ``grace`` seconds)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
        drain, self._drain = self._drain, None
        try:
            if drain is not None:
                # The pipe reaches end of file when the server has exited.
                await asyncio.wait_for(drain, grace)
            self.returncode = proc.wait(timeout=1.0)
        except (TimeoutError, subprocess.TimeoutExpired):
            log.warning("demo server did not stop in %.0f s; killing it", grace)
            proc.kill()
            self.returncode = proc.wait()
        finally:
            if self._transport is not None:
                self._transport.close()
                self._transport = None


def make_bridge(
    url: str, symbols: Sequence[str] = (), options: ClientOptions | None = None
) -> ClientBridge:
    """The dashboard's client stack: a store and a client sharing one watched set.

    The store is built first so that it holds a symbol's series before anyone
    else hears the symbol was added.
    """
    watched = WatchedSymbols(symbols)
    store = MarketStore(watched=watched)
    client = TickerClient(url, dashboard_options(options), watched=watched)
    return ClientBridge(client, store)


def make_window(
    url: str,
    symbols: Sequence[str],
    settings: QSettings,
    options: ClientOptions | None = None,
    remember_url: bool = True,
) -> MainWindow:
    """A dashboard window on ``url`` watching ``symbols`` (not yet shown or started)."""
    return MainWindow(make_bridge(url, symbols, options), settings, remember_url)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ticker-desktop",
        description="A live dashboard for a ticker_server: watchlist, charts, connection status.",
    )
    parser.add_argument("--url", help=f"server URL (default: the last one used, or {DEFAULT_URL})")
    parser.add_argument(
        "--symbols",
        help="comma-separated symbols to watch (default: the last run's, or a few well-known ones)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start a simulated feed on a free port and connect to it (stops with the window)",
    )
    parser.add_argument(
        "--token",
        help="bearer token for a server started with --token (default: env TICKER_TOKEN, "
        "or the last one given; saved in the settings)",
    )
    parser.add_argument("--cafile", help="PEM file of a private CA to trust for wss:// URLs")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser.parse_args(argv)


def _log_exception(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    log.error("unhandled exception", exc_info=(kind, value, tb))


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    log.error("event loop: %s", context.get("message"), exc_info=exc)


async def run(args: argparse.Namespace, settings: QSettings | None = None) -> int:
    """Show the window until it is closed; everything started here is stopped here."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_log_loop_exception)
    settings = settings or QSettings("ticker", "ticker-desktop")
    saved_symbols = str(settings.value("watchlist/symbols", "") or "")
    text = args.symbols if args.symbols is not None else saved_symbols
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()] or list(DEFAULT_SYMBOLS)
    demo: DemoServer | None = None
    if args.demo:
        demo = DemoServer()
        try:
            url = await demo.start()
        except (OSError, RuntimeError) as exc:
            log.error("cannot start the demo feed: %s", exc)
            return 1
    else:
        url = args.url or str(settings.value("connection/url", DEFAULT_URL) or DEFAULT_URL)
    token = args.token or os.environ.get("TICKER_TOKEN") or None
    saved = saved_token(settings, args.token)  # a file only the user can read
    if token is None and not args.demo:
        token = saved
    cafile = args.cafile or str(settings.value("connection/cafile", "") or "") or None
    if args.cafile:
        settings.setValue("connection/cafile", args.cafile)
    options = ClientOptions(token=token, cafile=cafile)
    window = make_window(url, symbols, settings, options, remember_url=not args.demo)
    closed = asyncio.Event()
    window.closed.connect(closed.set)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, window.close)
    try:
        window.show()
        window.start()
        # Qt, pyqtgraph and the window are built and live for the whole run: moved out of the
        # collector's reach, a full collection no longer walks them (measured 80-110 ms of
        # event-loop stall per pass with the window's heap, 0 ms frozen).
        gc.freeze()
        await closed.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        await window.shutdown()
        window.deleteLater()
        # Delete it now, while the loop runs, rather than during interpreter exit.
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        if demo is not None:
            await demo.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ticker-desktop`` console script.

    Exits 2, with a message that says what to install or set, where Qt would abort
    for want of a display or of a system library (:mod:`.preflight`).
    """
    import qasync

    args = parse_args(argv)
    problem = preflight.check()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.excepthook = _log_exception
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("ticker-desktop")
    app.setOrganizationName("ticker")
    app.setQuitOnLastWindowClosed(False)  # the loop ends when run() returns, not before
    apply_dark_theme(app)
    result: int = qasync.run(run(args))
    return result
