"""The ticker-server command as a user runs it: a real process, flags, signals and exit codes."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ticker_server.app import StartupError, TickerServer
from ticker_server.cli import parse_args
from ticker_server.config import ServerConfig

from .conftest import TIMEOUT, ServerFactory

STARTED: list[asyncio.subprocess.Process] = []
"""Server processes started by tests; any still running at teardown is killed."""


@pytest.fixture(autouse=True)
async def _no_orphans() -> AsyncIterator[None]:
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def spawn_server(
    *args: str, ready: str = "serving ws://"
) -> tuple[asyncio.subprocess.Process, str]:
    """Run ``python -m ticker_server ARGS`` until it logs a line containing ``ready``; return it and that line."""
    proc = await asyncio.create_subprocess_exec(
        # No backfill unless a test asks: a session of history costs seconds at every start.
        sys.executable, "-m", "ticker_server", "--backfill", "0", *args,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    STARTED.append(proc)
    assert proc.stderr is not None
    async with asyncio.timeout(TIMEOUT * 2):
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, f"server exited before logging {ready!r}"
            if ready in line:
                return proc, line


async def start_server(*flags: str) -> tuple[asyncio.subprocess.Process, str]:
    """Run ``python -m ticker_server`` on a free port and return it with the URL it serves."""
    proc, line = await spawn_server("--port", "0", *flags)
    return proc, line.split("serving ", 1)[1].strip()


async def test_sigterm_closes_clients_1001_and_exits_0() -> None:
    """SIGTERM gives every client close code 1001 and the process exits 0 within 5 s."""
    proc, url = await start_server("--tick-rate", "20")
    async with connect(url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "symbols": ["AAPL"]}))
        await ws.recv()
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        assert ws.close_code == 1001
    assert await asyncio.wait_for(proc.wait(), 5) == 0


async def test_sigint_exits_0() -> None:
    """Ctrl-C (SIGINT) is a clean shutdown too."""
    proc, _ = await start_server()
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 5) == 0


def test_print_schema() -> None:
    """--print-schema prints the JSON Schema and exits 0."""
    out = subprocess.run(
        [sys.executable, "-m", "ticker_server", "--print-schema"],
        capture_output=True,
        check=True,
        text=True,
    )
    schema = json.loads(out.stdout)
    assert "client_to_server" in schema and "server_to_client" in schema


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--port", "70000"], "--port"),
        (["--tick-rate", "0"], "--tick-rate"),
        (["--symbols", "AAPL,bad symbol!"], "--symbols"),
        (["--symbols", "AAPL,AAPL"], "--symbols"),
        (["gateway"], "--broker"),
        (["--certfile", "x.pem"], "--keyfile"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(flags: list[str], complaint: str) -> None:
    """A bad flag exits 2 and names the flag, before anything starts."""
    out = subprocess.run(
        [sys.executable, "-m", "ticker_server", *flags], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert complaint in out.stderr


def test_flags_build_the_config() -> None:
    """Flag names are a contract: each lands in the config."""
    config, _ = parse_args(
        [
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--symbols",
            "aapl,MSFT",
            "--tick-rate",
            "7",
            "--seed",
            "3",
            "--max-rate",
            "9",
            "--history",
            "50",
        ]
    )
    assert (config.host, config.port, config.symbols) == ("0.0.0.0", 0, ("AAPL", "MSFT"))
    assert (config.tick_rate, config.seed, config.max_rate, config.history) == (7.0, 3, 9.0, 50)


@pytest.mark.parametrize(
    ("case", "complaint"),
    [
        ("port in use", "address already in use"),
        ("bad certificate", "cannot load --certfile"),
        ("missing certificate", "No such file"),
        ("feed without Redis", "a feed needs Redis"),
        ("bad broker URL", "--broker redis://:***@127.0.0.1:notaport/0"),
    ],
)
def test_startup_failure_is_one_clear_line_and_exit_2(
    case: str, complaint: str, tmp_path: Path
) -> None:
    """Port taken, bad or missing certificate, or Redis unreachable for a feed: one error line, exit 2, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        garbage = tmp_path / "cert.pem"
        garbage.write_text("not a certificate\n")
        flags = {
            "port in use": ["--port", str(port)],
            "bad certificate": [
                "--port",
                "0",
                "--certfile",
                str(garbage),
                "--keyfile",
                str(garbage),
            ],
            "missing certificate": [
                "--port",
                "0",
                "--certfile",
                "/nonexistent.pem",
                "--keyfile",
                "/x",
            ],
            "feed without Redis": ["feed", "--broker", f"redis://:hunter2@127.0.0.1:{port}/0"],
            "bad broker URL": ["feed", "--broker", "redis://:hunter2@127.0.0.1:notaport/0"],
        }[case]
        out = subprocess.run(
            [sys.executable, "-m", "ticker_server", *flags],
            capture_output=True,
            text=True,
            timeout=20,
        )
    errors = [line for line in out.stderr.splitlines() if " ERROR " in line]
    assert out.returncode == 2, out.stderr
    assert len(errors) == 1 and "cannot start" in errors[0] and complaint in errors[0], out.stderr
    assert "Traceback" not in out.stderr and "hunter2" not in out.stderr


async def test_failed_start_leaves_nothing_running(make_server: ServerFactory) -> None:
    """A server that cannot listen stops its bus, feed and gateway tasks before raising StartupError."""
    first = await make_server()
    before = asyncio.all_tasks()
    second = TickerServer(ServerConfig(host="127.0.0.1", port=first.port))
    with pytest.raises(StartupError, match="address already in use"):
        await second.start()
    assert asyncio.all_tasks() == before
    assert second.bus is None and second.supervisor.faults == {}


async def test_sigterm_while_a_gateway_waits_for_its_feed() -> None:
    """A gateway still waiting for a feed to announce itself stops on SIGTERM and exits 0."""
    proc, _ = await spawn_server(
        "gateway", "--broker", "redis://127.0.0.1:1/0", "--port", "0", ready="waiting for a feed"
    )
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 5) == 0
