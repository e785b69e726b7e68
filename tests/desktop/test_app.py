"""The ticker-desktop command end to end, its --demo feed, and the headless example."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from ticker_desktop.app import DemoServer, parse_args
from ticker_desktop.client import ConnectionState, HelloReceived, TickerClient

from ..servers import SpawnServer
from .conftest import FAST, TIMEOUT, EventLog

ROOT = Path(__file__).resolve().parents[2]
BAD_SIGNS = (
    "Traceback",
    "Task was destroyed",
    "Event loop is closed",
    "ERROR",
    "Fatal Python error",
)


def child_env(home: Path) -> dict[str, str]:
    """Offscreen Qt, settings in a temporary home, and this checkout importable."""
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> str:
    """Collect lines until one contains ``needle``; return that line."""
    async with asyncio.timeout(TIMEOUT * 2):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"stream ended before {needle!r}:\n" + "".join(seen))
            line = raw.decode(errors="replace")
            seen.append(line)
            if needle in line:
                return line


async def run_desktop(home: Path, *args: str, wait_for: str) -> tuple[int, str]:
    """Start ticker-desktop, wait for a log line, send SIGTERM; return its exit code and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ticker_desktop",
        *args,
        env=child_env(home),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        await read_until(proc.stderr, wait_for, seen)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT * 2):
            while line := await proc.stderr.readline():
                seen.append(line.decode(errors="replace"))
            code = await proc.wait()
    except TimeoutError:
        raise AssertionError("no clean exit after SIGTERM:\n" + "".join(seen)) from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return code, "".join(seen)


async def test_demo_shows_a_live_dashboard_and_exits_cleanly(tmp_path: Path) -> None:
    """--demo starts a feed, goes live; closing exits 0 with no traceback and stops the feed."""
    code, log = await run_desktop(
        tmp_path, "--demo", "--symbols", "AAPL,MSFT", wait_for="live: ws://"
    )
    assert code == 0, log
    assert not [sign for sign in BAD_SIGNS if sign in log], log
    pid = int(log.split("demo server (pid ")[1].split(")")[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    settings = (tmp_path / ".config" / "ticker" / "ticker-desktop.conf").read_text()
    assert "AAPL,MSFT" in settings and "connection" not in settings, (
        "a demo's port is not remembered"
    )


async def test_closing_while_reconnecting_exits_cleanly(tmp_path: Path) -> None:
    """With no server the window keeps retrying; closing it then still exits 0 without noise."""
    port = await _free_port()
    code, log = await run_desktop(
        tmp_path, "--url", f"ws://127.0.0.1:{port}", wait_for="reconnecting in"
    )
    assert code == 0, log
    assert not [sign for sign in BAD_SIGNS if sign in log], log


async def test_demo_server_serves_and_stops_on_sigterm() -> None:
    """The demo feed is a real ticker_server child that reports its URL and exits 0 on SIGTERM."""
    demo = DemoServer(["--tick-rate", "20"])
    url = await demo.start()
    try:
        client = TickerClient(url, FAST)
        log = EventLog(client)
        client.start()
        hello = await log.wait_for(HelloReceived)
        assert "AAPL" in hello.hello.symbols
        assert client.state is ConnectionState.LIVE
        await client.close()
    finally:
        await demo.stop()
    assert demo.returncode == 0


async def test_print_ticks_example_prints_live_ticks(
    tmp_path: Path, spawn_server: SpawnServer
) -> None:
    """examples/print_ticks.py prints a snapshot and live ticks, then exits after --count."""
    server = await spawn_server("--port", "0", "--tick-rate", "20")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "print_ticks.py"),
        "--url",
        server.url,
        "--symbols",
        "AAPL",
        "--count",
        "5",
        env=child_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIMEOUT * 2):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "[live]" in text and "AAPL" in text and "-- live:" in text


def test_defaults_come_from_settings() -> None:
    """Without flags the URL and symbols are left to the saved settings."""
    args = parse_args([])
    assert args.url is None and args.symbols is None and not args.demo


async def _free_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port
