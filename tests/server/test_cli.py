"""The ticker-server command as a user runs it: a real process, flags, signals and exit codes."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ticker_server.app import StartupError, TickerServer
from ticker_server.cli import CLI_DEFAULTS, parse_args
from ticker_server.config import ServerConfig
from ticker_server.protocol import SERVER_TYPES, json_schema

from ..servers import START_TIMEOUT, SpawnServer
from ..timing import MS, TIMEOUT
from .conftest import ServerFactory


async def test_sigterm_closes_clients_1001_and_exits_0(spawn_server: SpawnServer) -> None:
    """SIGTERM gives every client close code 1001 and the process exits 0 within 5 s."""
    server = await spawn_server("--port", "0", "--tick-rate", "20")
    async with connect(server.url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "symbols": ["AAPL"]}))
        await ws.recv()
        server.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5000 * MS):
                while True:
                    await ws.recv()
        assert ws.close_code == 1001
    assert await server.wait(5000 * MS) == 0


async def test_sigint_exits_0(spawn_server: SpawnServer) -> None:
    """Ctrl-C (SIGINT) is a clean shutdown too."""
    server = await spawn_server("--port", "0")
    assert await server.stop(signal.SIGINT, 5000 * MS) == 0


REQUESTS = (
    {"type": "subscribe", "symbols": ["MSFT"], "snapshot": 5, "id": 2},
    {"type": "list_symbols"},
    {"type": "ping", "id": "p"},
    {"type": "bars", "symbol": "AAPL", "interval": 1, "id": "b"},
    {"type": "subscribe", "symbols": ["NOPE"], "id": 3},
    {"type": "unsubscribe", "symbols": ["MSFT"], "id": 4},
)
"""Requests that draw every other kind of reply from a server, once AAPL ticks flow."""


async def test_printed_schema_validates_what_a_server_process_sends(
    spawn_server: SpawnServer,
) -> None:
    """--print-schema prints the published schema, and every kind of message a running server sends validates against it."""
    printer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ticker_server", "--print-schema", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(printer.communicate(), START_TIMEOUT)
    assert printer.returncode == 0
    schema = json.loads(out)
    assert schema == json_schema()
    validator = Draft202012Validator({"$schema": schema["$schema"], **schema["server_to_client"]})
    server = await spawn_server(
        "--port", "0", "--symbols", "AAPL,MSFT", "--tick-rate", "50", "--heartbeat", "0.5"
    )
    kinds: set[str] = set()

    async def read(ws: ClientConnection, until: str) -> None:
        while True:
            message = json.loads(await ws.recv())
            validator.validate(message)
            kinds.add(message["type"])
            if message["type"] == until:
                return

    async with connect(server.url) as ws, connect(server.url) as idle:
        async with asyncio.timeout(TIMEOUT):
            await ws.send(
                json.dumps({"type": "subscribe", "symbols": ["AAPL"], "bars": [1], "id": 1})
            )
            await read(ws, "ticks")
            for request in REQUESTS:
                await ws.send(json.dumps(request))
            await read(ws, "unsubscribed")
            await read(ws, "bar")
            await read(idle, "heartbeat")
    assert kinds == SERVER_TYPES


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
        [sys.executable, "-m", "ticker_server", *flags],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
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
            timeout=START_TIMEOUT,
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


async def test_sigterm_while_a_gateway_waits_for_its_feed(spawn_server: SpawnServer) -> None:
    """A gateway still waiting for a feed to announce itself stops on SIGTERM and exits 0."""
    server = await spawn_server(
        "gateway", "--broker", "redis://127.0.0.1:1/0", "--port", "0", ready="waiting for a feed"
    )
    assert await server.stop(signal.SIGTERM, 5000 * MS) == 0


NO_FLAG = {"ping_interval", "ping_timeout", "open_timeout", "role"}
"""ServerConfig fields without a flag of their own (the role is the positional argument)."""
CHANGED = ServerConfig(
    host="10.1.2.3",
    port=1,
    symbols=("MSFT",),
    tick_rate=2.5,
    seed=7,
    max_rate=3.0,
    history=10,
    heartbeat=1.5,
    max_symbols=3,
    max_buffer=999,
    slow_grace=4.0,
    sndbuf=4096,
    request_rate=2.0,
    request_burst=3.0,
    max_connections=5,
    compression=True,
    tokens=("secret",),
    allow_origins=("https://example.com",),
    require_origin=True,
    certfile="cert.pem",
    keyfile="key.pem",
    broker="redis://127.0.0.1:6379/0",
    backfill=90 * 60.0,
    bar_retention=3600.0,
)
"""A config whose every flagged field differs from the default."""


def test_no_flags_give_the_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without flags the CLI builds ServerConfig()'s defaults, plus a session of backfill."""
    monkeypatch.delenv("TICKER_TOKEN", raising=False)
    assert parse_args([])[0] == replace(ServerConfig(), backfill=6.5 * 3600) == CLI_DEFAULTS


def test_every_flag_default_is_read_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each flag's default comes from the config it is given, none is written in the CLI."""
    monkeypatch.delenv("TICKER_TOKEN", raising=False)
    for item in fields(ServerConfig):
        if item.name not in NO_FLAG:
            assert getattr(CHANGED, item.name) != item.default, f"CHANGED keeps {item.name}"
    assert parse_args([], defaults=CHANGED)[0] == CHANGED


@pytest.mark.parametrize("defaults", [ServerConfig(), CHANGED], ids=["default", "changed"])
def test_help_shows_the_config_defaults(
    defaults: ServerConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help states each flag's default as the config has it."""
    with pytest.raises(SystemExit) as exited:
        parse_args(["--help"], defaults=defaults)
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    shown = 0
    for item in fields(ServerConfig):
        value = getattr(defaults, item.name)
        if item.name in NO_FLAG or value is None or value == ():
            continue
        if isinstance(value, tuple):
            value = ",".join(value) if item.name == "symbols" else list(value)
        flag = "--" + item.name.replace("_", "-")
        assert f"(default {value})" in text, f"{flag}: default {value} not in --help"
        shown += 1
    assert shown >= 14


async def test_spawn_reports_a_server_that_exits_before_serving(spawn_server: SpawnServer) -> None:
    """The process helper fails at the child's exit, with its log, instead of waiting out its bound."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(AssertionError, match=r"exited \(2\) before logging(.|\n)*--port"):
        await spawn_server("--port", "70000", timeout=60.0)
    assert loop.time() - began < 30.0
