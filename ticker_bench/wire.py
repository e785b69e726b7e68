"""A bench client's connection: our own frame splitter, or websockets' ``recv()`` (``--plain``).

The fast path is an asyncio :class:`~asyncio.BufferedProtocol` of our own. websockets'
public sans-I/O :class:`~websockets.client.ClientProtocol` does the opening handshake and
every frame that needs protocol logic (pings, close, fragments, anything malformed); the
splitter hands it whole frames only, so its parser always stands at a frame boundary.
A ticks frame then costs a header decode and a ``bytes.count`` instead of a trip through
the library's generator parser, a message queue and a coroutine wake-up (about 5x
cheaper, which keeps the tool off the critical path).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from .tally import ClientSpec, Sampler, Tally

__all__ = ["BenchClient", "FastClient", "PlainClient", "open_client"]

FIN_TEXT = 0x81
PARSE_DELAY = 0.001
"""Seconds between stamping a read and parsing it, so parsing waits for a burst of reads to end."""
MAX_HEAD = 64 * 1024
"""Longest handshake response accepted."""

_READ_VIEW = memoryview(bytearray(256 * 1024))
"""One read buffer for every connection of the worker: a read is consumed before the next."""


class BenchClient:
    """What the worker sees of a client, whichever path its frames take."""

    fast = False

    def __init__(self, spec: ClientSpec, sampler: Sampler, track_times: bool) -> None:
        self.loop = asyncio.get_running_loop()
        self.tally = Tally(spec, sampler, track_times, self._on_message)
        self.hello: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.subscribed: asyncio.Future[list[str]] = self.loop.create_future()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.lost_code: int | None = None
        """The close code received (1006 when none was), once the connection is lost."""
        self.closed_at = 0.0
        self.closing_by_us = False

    @property
    def spec(self) -> ClientSpec:
        return self.tally.spec

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "hello" and not self.hello.done():
            self.hello.set_result(message)
        elif kind == "subscribed" and not self.subscribed.done():
            self.subscribed.set_result(list(message.get("symbols", [])))

    def _lost(self, code: int | None) -> None:
        self.closed_at = time.time()
        self.lost_code = 1006 if code is None else code
        if not self.lost.done():
            self.lost.set_result(None)

    async def send(self, text: str) -> None:
        raise NotImplementedError

    def pause(self) -> None:
        """Stop reading, so that the server sees a slow consumer."""
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Close with 1000 and wait a little for the server; then drop the connection."""
        raise NotImplementedError


class FastClient(BenchClient, asyncio.BufferedProtocol):
    """Counts ticks frames straight from the socket; websockets' sans-I/O protocol does the rest.

    It is a buffered protocol so that asyncio reads into one preallocated buffer:
    a plain protocol gets ``sock.recv(256 KiB)``, which on Python 3.11 allocates
    256 KiB per read, about 12 us of the ~16 us a small read costs here.
    """

    fast = True

    def __init__(self, url: str, spec: ClientSpec, sampler: Sampler, track_times: bool) -> None:
        super().__init__(spec, sampler, track_times)
        self.ws = ClientProtocol(parse_uri(url), max_size=None)
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = self.loop.create_future()
        self.head = b""
        """The handshake response read so far (until it is complete)."""
        self.rest = b""
        """The start of a frame whose end has not been read yet."""
        self.raw = False
        """Every byte goes to websockets: the server sent what the splitter does not take."""
        self.fragments: list[bytes] = []

    # -- asyncio's side -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.ws.send_request(self.ws.connect())
        self._flush()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        """Stamp the read now and parse it a little later, after the burst of reads it is in.

        When one tick reaches 100 clients of a worker at once, parsing each read
        before the next socket is read would add the earlier clients' parsing
        time to the later clients' latency (about 1 ms at 100 verified clients):
        a cost of the tool, not of the server. The server writes such a burst
        over about 0.6 ms, so parsing waits PARSE_DELAY for the rest of it.
        """
        data = bytes(_READ_VIEW[:nbytes])
        if not self.opened.done():
            self._handshake(data)
            return
        backlog = self.tally.sampler.backlog
        if not backlog:
            self.loop.call_later(PARSE_DELAY, self.tally.sampler.parse_backlog)
        backlog.append((self.consume, data, time.time()))

    def eof_received(self) -> bool:
        self.tally.sampler.parse_backlog()  # what was read before the end goes first
        self.ws.receive_eof()
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.sampler.parse_backlog()
        self.ws.receive_eof()  # idempotent; the state becomes CLOSED
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the opening handshake"))
        self._lost(self.ws.close_code)

    # -- bytes in ---------------------------------------------------------------------

    def _handshake(self, data: bytes) -> None:
        head = self.head + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            self.head = head
            if len(head) > MAX_HEAD:
                self.opened.set_exception(ConnectionError("handshake response too long"))
                self._abort()
            return
        self.head = b""
        self.ws.receive_data(head[: end + 4])  # the response ends here: the rest is frames
        for event in self.ws.events_received():
            assert isinstance(event, Response)
        self._flush()
        if self.ws.handshake_exc is not None:
            self.opened.set_exception(self.ws.handshake_exc)
            self._abort()
            return
        self.opened.set_result(None)
        if len(head) > end + 4:
            self.consume(head[end + 4 :], time.time())

    def consume(self, data: bytes, now: float) -> None:
        """Account for the frames in ``data``, read at ``now``."""
        if self.raw:
            self._to_websockets(data, now)
            return
        if self.rest:
            data = self.rest + data
            self.rest = b""
        n = len(data)
        pos = 0
        while n - pos >= 2:
            length = data[pos + 1]
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            else:  # a masked frame from a server: websockets fails the connection
                self.raw = True
                self._to_websockets(data[pos:], now)
                return
            end = start + length
            if end > n:
                break
            if data[pos] == FIN_TEXT:
                self.tally.on_frame(data, start, end, now)
            else:
                self._to_websockets(data[pos:end], now)
            pos = end
        if pos < n:
            self.rest = data[pos:]

    def _to_websockets(self, data: bytes, now: float) -> None:
        """Let websockets handle whole frames: answer pings and close, assemble fragments."""
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                self._on_frame(event, now)
        self._flush()
        if self.ws.close_expected() and self.transport is not None:
            # The server closes TCP first; if it does not, do it after a while.
            self.loop.call_later(2.0, self._abort)

    def _on_frame(self, frame: Frame, now: float) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self.fragments.append(bytes(frame.data))
            if frame.fin:
                message = b"".join(self.fragments)
                self.fragments = []
                self.tally.on_frame(message, 0, len(message), now)

    # -- bytes out ----------------------------------------------------------------------

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def send(self, text: str) -> None:
        self.ws.send_text(text.encode())
        self._flush()

    def pause(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    async def close(self) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_close(1000)
            self._flush()
        self.resume()
        await asyncio.wait([self.lost], timeout=2.0)
        self._abort()


class PlainClient(BenchClient):
    """Every message through websockets' asyncio client and ``recv()``, as most clients read."""

    def __init__(
        self, conn: ClientConnection, spec: ClientSpec, sampler: Sampler, track_times: bool
    ) -> None:
        super().__init__(spec, sampler, track_times)
        self.conn = conn
        self.reading = asyncio.Event()
        self.reading.set()
        self.reader = self.loop.create_task(self._read())

    async def _read(self) -> None:
        """Hand each message to the tally; while paused, websockets' own flow control
        stops reading the socket once its queue fills, so the server sees a slow client."""
        try:
            while True:
                await self.reading.wait()
                message = await self.conn.recv(decode=False)
                self.tally.on_frame(message, 0, len(message), time.time())
        except Exception:  # closed: close_code says how
            await self.conn.wait_closed()
            self._lost(self.conn.close_code)

    async def send(self, text: str) -> None:
        await self.conn.send(text)

    def pause(self) -> None:
        self.reading.clear()

    def resume(self) -> None:
        self.reading.set()

    async def close(self) -> None:
        self.resume()
        await self.conn.close()
        await asyncio.wait([self.reader], timeout=2.0)
        self.reader.cancel()


async def open_client(
    url: str,
    spec: ClientSpec,
    sampler: Sampler,
    *,
    track_times: bool,
    plain: bool,
    sock: socket.socket | None,
    open_timeout: float,
) -> BenchClient:
    """Connect and complete the opening handshake (over ``sock`` if given)."""
    if plain:
        conn = await connect(
            url,
            sock=sock,
            open_timeout=open_timeout,
            ping_interval=None,
            close_timeout=2,
            max_size=None,
            compression=None,
        )
        return PlainClient(conn, spec, sampler, track_times)
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    client = FastClient(url, spec, sampler, track_times)
    async with asyncio.timeout(open_timeout):
        if sock is not None:
            host = uri.host if uri.secure else None
            await loop.create_connection(
                lambda: client, sock=sock, ssl=uri.secure or None, server_hostname=host
            )
        else:
            await loop.create_connection(lambda: client, uri.host, uri.port, ssl=uri.secure or None)
        try:
            await client.opened
        except BaseException:
            client._abort()
            raise
    return client
