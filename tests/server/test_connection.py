"""The connection adapter on its own: an echo listener behind real sockets, real websockets clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from ticker_server.connection import Connection, ConnectionSettings, WebSocketServer, text_frame

from .conftest import MS, TIMEOUT


@given(st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000]), st.binary(max_size=16))
def test_text_frame_is_what_websockets_would_send(size: int, tail: bytes) -> None:
    """Our header encoder gives byte for byte the frame websockets serializes, at every length boundary."""
    payload = b"x" * size + tail
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


class Echo:
    """A listener that echoes text and records what the connection tells it."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.paused = asyncio.Event()
        self.resumed = asyncio.Event()
        self.lost = asyncio.Event()
        self.opened: list[Connection] = []

    def open(self, conn: Connection) -> None:
        self.opened.append(conn)
        conn.open(self, conn)

    def on_message(self, client: Connection, message: str | bytes) -> None:
        self.messages.append(message)
        if isinstance(message, str):
            client.send_text(message.encode())

    def on_pause(self, client: Connection) -> None:
        self.paused.set()

    def on_resume(self, client: Connection) -> None:
        self.resumed.set()

    def on_lost(self, client: Connection) -> None:
        self.lost.set()


Start = Callable[..., Any]


@pytest.fixture
async def echo_server() -> AsyncIterator[Start]:
    """Start WebSocketServers on 127.0.0.1, port 0, with an Echo listener; all closed at teardown."""
    servers: list[WebSocketServer] = []

    async def start(**settings: Any) -> tuple[WebSocketServer, Echo, str]:
        echo = Echo()
        settings.setdefault("on_request", lambda conn, request: None)
        server = WebSocketServer(ConnectionSettings(on_open=echo.open, **settings))
        port = await server.listen("127.0.0.1", 0)
        servers.append(server)
        return server, echo, f"ws://127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.close()


async def test_text_is_echoed_and_binary_delivered_as_bytes(echo_server: Start) -> None:
    """A text message reaches the listener as str and comes back; a binary one arrives as bytes."""
    _, echo, url = await echo_server()
    async with connect(url) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
        await ws.send(b"\x00\x01")
        await ws.send("after")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "after"
    assert echo.messages == ["hello", b"\x00\x01", "after"]


async def test_fragments_are_assembled_into_one_message(echo_server: Start) -> None:
    """A message sent in fragments reaches the listener once, whole."""
    _, echo, url = await echo_server()
    async with connect(url) as ws:
        await ws.send(["frag", "ment", "ed"])
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "fragmented"
    assert echo.messages == ["fragmented"]


async def test_the_handshake_hook_can_refuse(echo_server: Start) -> None:
    """A response from on_request is sent instead of the upgrade; no connection opens."""

    def refuse(conn: Connection, request: Request) -> Response | None:
        return conn.protocol.reject(401, "no\n") if "token" not in request.path else None

    _, echo, url = await echo_server(on_request=refuse)
    with pytest.raises(InvalidStatus) as refused:
        await connect(url)
    assert refused.value.response.status_code == 401
    async with connect(url + "/?token=1") as ws:
        await ws.send("in")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "in"
    assert len(echo.opened) == 1


async def test_pause_and_resume_follow_the_write_buffer(echo_server: Start) -> None:
    """Writes to a client that does not read pause the listener above the high mark and resume it once it reads."""
    _, echo, url = await echo_server(write_limits=(4096, 1024))
    async with connect(url, max_queue=None) as ws:
        await ws.send("x")
        await asyncio.wait_for(ws.recv(), TIMEOUT)
        ws.transport.pause_reading()
        [conn] = echo.opened
        async with asyncio.timeout(TIMEOUT):
            while not echo.paused.is_set():
                conn.send_text(b"y" * 1000)
                await asyncio.sleep(0)  # let the socket fill: the kernel buffers first
        assert conn.paused and not echo.resumed.is_set()
        ws.transport.resume_reading()
        await asyncio.wait_for(echo.resumed.wait(), TIMEOUT)
        assert not conn.paused


async def test_a_client_that_never_answers_the_close_is_cut_off_at_close_timeout(
    echo_server: Start,
) -> None:
    """After close(), a client that does not answer keeps its socket only until close_timeout."""
    close_timeout = 200 * MS
    _, echo, url = await echo_server(close_timeout=close_timeout)
    ws = await connect(url)
    ws.transport.pause_reading()  # it never sees the close frame, so never answers it
    [conn] = echo.opened
    loop = asyncio.get_running_loop()
    start = loop.time()
    conn.close(1000, "bye")
    await asyncio.wait_for(echo.lost.wait(), TIMEOUT)
    assert close_timeout <= loop.time() - start < close_timeout + 500 * MS
    ws.transport.abort()


async def test_a_client_that_answers_the_close_goes_at_once(echo_server: Start) -> None:
    """A client that answers the close handshake is gone well before close_timeout."""
    _, echo, url = await echo_server(close_timeout=TIMEOUT)
    ws = await connect(url)
    [conn] = echo.opened
    conn.close(4000, "done")
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert ws.close_code == 4000 and ws.close_reason == "done"
    await asyncio.wait_for(echo.lost.wait(), TIMEOUT / 2)


async def test_server_close_says_going_away_to_everyone(echo_server: Start) -> None:
    """Closing the server closes every client with 1001 and returns once all are gone."""
    server, _, url = await echo_server()
    clients: list[ClientConnection] = [await connect(url) for _ in range(3)]
    await asyncio.wait_for(server.close(), TIMEOUT)
    assert not server.connections
    for ws in clients:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 1001


async def test_a_silent_socket_is_dropped_at_open_timeout(echo_server: Start) -> None:
    """A TCP client that never sends its handshake is disconnected after open_timeout."""
    open_timeout = 200 * MS
    _, echo, url = await echo_server(open_timeout=open_timeout)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    assert open_timeout <= loop.time() - start + 10 * MS < open_timeout + 500 * MS
    assert not echo.opened
    writer.close()
