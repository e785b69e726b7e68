"""The bearer token: never in a log line, even at DEBUG, and kept in a file only the user can read."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from ticker_desktop.client import ConnectionState, StateChanged, TickerClient, TicksReceived
from ticker_desktop.credentials import LEGACY_KEY, load_token, save_token, saved_token, token_path
from ticker_desktop.redact import redact_url, url_secrets

from ..conftest import ServerFactory
from .conftest import FAST, EventLog
from .test_app import run_desktop

TOKEN = "s3cr3t-T0KEN-9f8e7d"


def client_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The client's log lines (the server in this process logs its own side too)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith(("websockets.client", "ticker_desktop"))
    ]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_token_never_logged_at_debug(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG, websockets prints the request headers, but never the token."""
    caplog.set_level(logging.DEBUG)
    server = await make_server(tokens=(TOKEN,))
    options = dataclasses.replace(FAST, token=TOKEN)
    client = TickerClient(server.url, options)
    log = EventLog(client)
    client.start()
    try:
        await client.subscribe(["AAPL"])
        await log.wait_for(TicksReceived)
        assert client.state is ConnectionState.LIVE
    finally:
        await client.close()
    ours = client_lines(caplog)
    assert [m for m in ours if "Authorization" in m] == ["> Authorization: Bearer ***"]
    assert not [m for m in ours if TOKEN in m]
    assert TOKEN not in repr(options)


async def test_the_app_at_debug_keeps_the_token_out_of_logs_and_settings(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """ticker-desktop --token at --log-level DEBUG: no token on stderr or in the settings; a 0600 file."""
    server = await make_server(tokens=(TOKEN,))
    code, log = await run_desktop(
        tmp_path, "--url", server.url, "--token", TOKEN, "--log-level", "DEBUG", wait_for="live: ws"
    )
    assert code == 0, log
    assert "Authorization: Bearer ***" in log, "DEBUG did log the headers"
    assert TOKEN not in log
    folder = tmp_path / ".config" / "ticker"
    assert TOKEN not in (folder / "ticker-desktop.conf").read_text()
    token_file = folder / "ticker-desktop.token"
    assert token_file.read_text() == TOKEN
    assert mode(token_file) == 0o600


def test_token_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """Saved under umask 0 in a new folder, the file is 0600 and its folder 0700."""
    old = os.umask(0)
    try:
        path = tmp_path / "new" / "ticker-desktop.token"
        save_token(path, TOKEN)
        save_token(path, TOKEN + "2")  # replaced atomically, still private
    finally:
        os.umask(old)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert load_token(path) == TOKEN + "2"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file left"


def test_token_left_in_the_settings_by_an_older_version_moves_out(tmp_path: Path) -> None:
    """A token an older version kept in the 0644 settings file is moved to the token file."""
    settings = QSettings(str(tmp_path / "ticker-desktop.conf"), QSettings.Format.IniFormat)
    settings.setValue(LEGACY_KEY, TOKEN)
    settings.setValue("connection/url", "ws://example:1")
    settings.sync()
    assert TOKEN in (tmp_path / "ticker-desktop.conf").read_text()
    assert saved_token(settings) == TOKEN
    assert TOKEN not in (tmp_path / "ticker-desktop.conf").read_text()
    assert "ws://example:1" in (tmp_path / "ticker-desktop.conf").read_text()
    assert token_path(settings) == tmp_path / "ticker-desktop.token"
    assert mode(token_path(settings)) == 0o600
    assert saved_token(settings) == TOKEN, "and is read from there next time"


def test_token_file_readable_by_others_is_made_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A token file someone made 0644 is tightened to 0600, with a warning."""
    path = tmp_path / "ticker-desktop.token"
    path.write_text(TOKEN)
    path.chmod(0o644)
    assert load_token(path) == TOKEN
    assert mode(path) == 0o600
    assert any("readable by others" in r.getMessage() for r in caplog.records)


async def test_token_in_the_url_is_masked_in_logs_and_events(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A ?token= in the URL (the server accepts it) is masked in the request line and every event."""
    caplog.set_level(logging.DEBUG)
    server = await make_server(tokens=(TOKEN,))
    client = TickerClient(f"{server.url}/?token={TOKEN}", FAST)
    log = EventLog(client)
    client.start()
    try:
        await client.subscribe(["AAPL"])
        await log.wait_for(TicksReceived)
    finally:
        await client.close()
    ours = client_lines(caplog)
    assert any(m.startswith("> GET /?token=***") for m in ours), "the request line is logged"
    assert not [m for m in ours if TOKEN in m]
    assert all(TOKEN not in e.url for e in log.of(StateChanged))


def test_redact_url_masks_passwords_and_token_parameters() -> None:
    """Credentials in a URL are masked; everything else is kept as it was."""
    assert redact_url("wss://h:1/?token=abc&x=1") == "wss://h:1/?token=%2A%2A%2A&x=1"
    assert redact_url("ws://user:pw@h:1/") == "ws://user:***@h:1/"
    assert redact_url("ws://h:1/?a=b") == "ws://h:1/?a=b"
    assert url_secrets("ws://u:pw@h/?Token=t&a=b") == ["pw", "t"]
