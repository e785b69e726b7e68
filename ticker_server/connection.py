"""A lean websockets server connection: messages go to a callback as they arrive.

websockets' own receive path keeps, per connection, a handler coroutine parked
in ``recv()`` (four coroutine frames and their futures), an assembler queue and
a keepalive task with its timer, and it holds the handshake's headers for the
connection's life. At 10,000 connections that is about a third of the server's
memory. Here a complete message is handed to :attr:`GatewayConnection.on_message`
from ``data_received``, the handler only waits for the close, pings are sent by
the gateway's maintenance pass (it records each pong's time here), and the
handshake headers are dropped once the handshake is done.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any, cast

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State
from websockets.typing import Data

__all__ = ["GatewayConnection"]


class GatewayConnection(ServerConnection):
    """A :class:`ServerConnection` that delivers messages by callback instead of ``recv()``."""

    # Slots, not the instance dict: a few more keys would double the size of the dict.
    __slots__ = (
        "_early",
        "_owner",
        "_partial",
        "_partial_text",
        "lost",
        "on_message",
        "on_pause",
        "pong_at",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # An empty deque holds a 64-slot block (about 700 B); this one only ever holds the
        # waiters of an awaited drain, which the gateway never does, so a list serves.
        self.drain_waiters = cast("collections.deque[asyncio.Future[None]]", [])
        self.lost: asyncio.Future[None] = self.loop.create_future()
        """Done when the TCP connection is gone (cheaper to await than ``wait_closed()``)."""
        self.on_message: Callable[[Any, Data], None] | None = None
        self.on_pause: Callable[[Any], None] | None = None
        self._owner: Any = None
        self._early: list[Data] | None = None
        self.pong_at = 0.0
        """Loop time of the latest pong."""
        self._partial: bytearray | None = None
        self._partial_text = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # recv() is never called, so the assembler's frame queue stays empty: a list, not a deque.
        self.recv_messages.frames.queue = cast("collections.deque[Frame]", [])

    def listen(
        self,
        on_message: Callable[[Any, Data], None],
        on_pause: Callable[[Any], None],
        owner: Any,
    ) -> None:
        """Call ``on_message(owner, message)`` with each complete message from now on, and
        ``on_pause(owner)`` when the transport's write buffer goes above its high-water mark.

        Messages that came in before (normally none) are delivered at once.
        """
        self.on_message, self.on_pause, self._owner = on_message, on_pause, owner
        early, self._early = self._early, None
        for message in early or ():
            on_message(owner, message)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.on_pause is not None:
            self.on_pause(self._owner)

    def forget_handshake(self) -> None:
        """Drop the handshake's headers (about 3.5 KB), which nothing reads after it."""
        if self.request is not None:
            self.request.headers.clear()
        if self.response is not None:
            self.response.headers.clear()

    def fail(self, code: int, reason: str) -> None:
        """Close at once without waiting for a drain; the socket goes after close_timeout."""
        if self.protocol.state is State.OPEN:
            self.protocol.fail(code, reason)
            self.send_data()
        self.loop.call_later(self.close_timeout or 0.0, self.transport.abort)

    def process_event(self, event: Any) -> None:
        if self.request is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake request
            return
        opcode = event.opcode
        if opcode is Opcode.PONG:
            self.pong_at = self.loop.time()
        elif opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if event.fin:
                self._deliver(opcode is Opcode.TEXT, event.data)
            else:
                self._partial = bytearray(event.data)
                self._partial_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT and self._partial is not None:
            # The protocol has checked the order of fragments and the message's total size.
            self._partial += event.data
            if event.fin:
                data, self._partial = self._partial, None
                self._deliver(self._partial_text, data)

    def _deliver(self, text: bool, data: bytes | bytearray | memoryview) -> None:
        message: Data
        if text:
            try:
                message = str(data, "utf-8")
            except UnicodeDecodeError as exc:
                self.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        else:
            message = bytes(data)
        if self.on_message is None:
            self._early = [*(self._early or ()), message]
        else:
            self.on_message(self._owner, message)
