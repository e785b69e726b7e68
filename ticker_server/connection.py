"""One WebSocket connection: an asyncio Protocol of our own over websockets' sans-I/O core.

websockets' :class:`~websockets.server.ServerProtocol` does the RFC 6455 work
(handshake checks, frame parsing, fragments, control frames, the close
handshake) with bytes in and events and bytes out; this adapter moves those
bytes between it and an asyncio transport, and hands each complete text message
to the gateway by callback. That is the integration websockets documents
("Integrate the Sans-I/O layer"), so it uses only its public API.

Writes never wait: the transport buffers, and :meth:`Listener.on_pause` /
:meth:`Listener.on_resume` tell the gateway when the buffer crosses its marks.
For the broadcast the gateway writes one pre-framed byte string (:func:`text_frame`)
to many transports; that is only valid without extensions, see :attr:`Connection.raw`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any, Protocol

from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import SEND_EOF, State
from websockets.server import ServerProtocol
from websockets.typing import Origin

__all__ = [
    "Connection",
    "ConnectionSettings",
    "Listener",
    "WebSocketServer",
    "deflate",
    "text_frame",
]

log = logging.getLogger("ticker_server.connection")

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, unfragmented text frame (RFC 6455 5.2), as servers send.

    Our own encoder, so the broadcast frames a message once for every client.
    """
    length = len(payload)
    if length < 126:
        return _SHORT.pack(_FIN_TEXT, length) + payload
    if length < 1 << 16:
        return _MEDIUM.pack(_FIN_TEXT, 126, length) + payload
    return _LONG.pack(_FIN_TEXT, 127, length) + payload


class Listener(Protocol):
    """What a connection tells its owner about ``client``, given to :meth:`Connection.open`."""

    def on_message(self, client: Any, message: str | bytes) -> None: ...
    def on_pause(self, client: Any) -> None: ...
    def on_resume(self, client: Any) -> None: ...
    def on_lost(self, client: Any) -> None: ...


Handshake = Callable[["Connection", Request], Response | None]
"""Checks a handshake request: None to accept it, else the HTTP response to answer."""


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Settings shared by every connection of one server (one object, not one per connection)."""

    on_request: Handshake
    on_open: Callable[[Connection], None]
    """Called once the handshake succeeded; it calls :meth:`Connection.open`."""
    origins: Sequence[Origin | None] | None = None
    extensions: Sequence[ServerExtensionFactory] | None = None
    max_size: int | None = 2**20
    open_timeout: float = 10.0
    close_timeout: float = 5.0
    write_limits: tuple[int, int] = (64 * 1024, 16 * 1024)
    """High and low water marks of the transport's write buffer."""


class Connection(asyncio.Protocol):
    """Bytes between an asyncio transport and websockets' :class:`ServerProtocol`."""

    # Slots: at 10,000 connections an instance dict would cost more than the protocol itself.
    __slots__ = (
        "__weakref__",
        "_timer",
        "client",
        "listener",
        "partial",
        "partial_text",
        "paused",
        "pong_at",
        "protocol",
        "raw",
        "remote_address",
        "server",
        "transport",
    )

    def __init__(self, server: WebSocketServer) -> None:
        self.server = server
        settings = server.settings
        self.protocol = ServerProtocol(
            origins=settings.origins,
            extensions=settings.extensions,
            max_size=settings.max_size,
        )
        self.transport: asyncio.Transport | None = None
        self.remote_address: tuple[str, int] | None = None
        self.listener: Listener | None = None
        self.client: Any = None
        self.raw = True
        """No extension transforms frames: :func:`text_frame` bytes may be written as they are."""
        self.paused = False
        """The transport's write buffer is above its high-water mark."""
        self.pong_at = 0.0
        """Loop time of the latest pong."""
        self.partial: bytearray | None = None
        """A fragmented message being assembled (the protocol checks order and size)."""
        self.partial_text = False
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(*self.server.settings.write_limits)
        peer = transport.get_extra_info("peername")
        self.remote_address = (peer[0], peer[1]) if peer else None
        self.server.connections.add(self)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.server.settings.open_timeout, self._handshake_timeout)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self._request(event)
        self._flush()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None  # the transport closes itself

    def pause_writing(self) -> None:
        self.paused = True
        if self.listener is not None:
            self.listener.on_pause(self.client)

    def resume_writing(self) -> None:
        self.paused = False
        if self.listener is not None:
            self.listener.on_resume(self.client)

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # CLOSED, whatever the state was
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.server.forget(self)
        listener, self.listener = self.listener, None
        client, self.client = self.client, None
        if listener is not None:
            listener.on_lost(client)

    # -- what the gateway calls ----------------------------------------------------

    def open(self, listener: Listener, client: Any) -> None:
        """Deliver this connection's messages and buffer changes to ``listener`` for ``client``."""
        self.listener, self.client = listener, client

    @property
    def is_open(self) -> bool:
        return self.protocol.state is State.OPEN

    def send_text(self, payload: bytes) -> None:
        """Queue one text message (UTF-8 ``payload``) without waiting."""
        if self.transport is None or self.protocol.state is not State.OPEN:
            return
        if self.raw:
            self.transport.write(text_frame(payload))
        else:
            self.protocol.send_text(payload)
            self._flush()

    def send_ping(self) -> None:
        self.protocol.send_ping(b"")
        self._flush()

    def close(self, code: int, reason: str) -> None:
        """Start the close handshake; the socket goes when the client answers, or at close_timeout.

        No drain is awaited: the close frame queues behind what the client has not read,
        so one that resumes reading within close_timeout still learns why.
        """
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._flush()
        self._abort_later()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    @property
    def close_code(self) -> int | None:
        return self.protocol.close_code

    # -- internals ---------------------------------------------------------------

    def _request(self, request: Request) -> None:
        protocol = self.protocol
        try:
            response = self.server.settings.on_request(self, request)
        except Exception:
            log.exception("handshake check failed")
            response = protocol.reject(500, "internal server error\n")
        if response is None:
            response = protocol.accept(request)
        protocol.send_response(response)
        if protocol.state is State.OPEN:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.raw = not protocol.extensions
            self._flush()  # the 101 goes out before anything the gateway writes
            # The handshake's headers are not kept: nothing reads them after it.
            self.server.settings.on_open(self)

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._deliver(opcode is Opcode.TEXT, frame.data)
            else:
                self.partial = bytearray(frame.data)
                self.partial_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT and self.partial is not None:
            self.partial += frame.data
            if frame.fin:
                data, self.partial = self.partial, None
                self._deliver(self.partial_text, data)
        elif opcode is Opcode.PONG:
            self.pong_at = asyncio.get_running_loop().time()

    def _deliver(self, text: bool, data: bytes | bytearray | memoryview) -> None:
        if self.listener is None or self.protocol.state is not State.OPEN:
            return
        message: str | bytes
        if text:
            try:
                message = str(data, "utf-8")
            except UnicodeDecodeError as exc:
                self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        else:
            message = bytes(data)
        self.listener.on_message(self.client, message)

    def _flush(self) -> None:
        """Write what the protocol has for the network, and end the TCP stream when it says so."""
        transport = self.transport
        if transport is None:
            return
        for data in self.protocol.data_to_send():
            if data == SEND_EOF:
                if transport.can_write_eof():
                    transport.write_eof()
                else:  # TLS cannot half-close
                    transport.close()
            else:
                transport.write(data)
        if self.protocol.close_expected():
            self._abort_later()

    def _abort_later(self) -> None:
        if self._timer is None and self.transport is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.server.settings.close_timeout, self.transport.abort)

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.protocol.state is State.CONNECTING and self.transport is not None:
            self.transport.abort()


class WebSocketServer:
    """A listening socket whose connections are :class:`Connection` objects.

    Args:
        settings: what every connection shares.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.connections: set[Connection] = set()
        """Every connection from accept to loss, open or not."""
        self.server: asyncio.Server | None = None
        self._gone: asyncio.Future[None] | None = None

    async def listen(self, host: str, port: int, ssl: SSLContext | None = None) -> int:
        """Start listening; returns the port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Connection(self),
            host,
            port,
            ssl=ssl,
            ssl_handshake_timeout=self.settings.open_timeout if ssl is not None else None,
        )
        port_: int = self.server.sockets[0].getsockname()[1]
        return port_

    def forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    async def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        """Stop listening, close every connection with ``code``, and wait until all are gone.

        A connection that does not answer is aborted after close_timeout.
        """
        server, self.server = self.server, None
        if server is not None:
            server.close()
        self._gone = asyncio.get_running_loop().create_future()
        for connection in list(self.connections):
            if connection.protocol.state is State.CONNECTING:
                connection.abort()
            else:
                connection.close(code, reason)
        if self.connections:
            await self._gone
        if server is not None:
            await server.wait_closed()


def deflate() -> list[ServerExtensionFactory]:
    """permessage-deflate with websockets' own defaults for servers (12-bit windows, memLevel 5)."""
    return [
        ServerPerMessageDeflateFactory(
            server_max_window_bits=12,
            client_max_window_bits=12,
            compress_settings={"memLevel": 5},
        )
    ]
