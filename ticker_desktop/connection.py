"""The client's socket side: connect, read, write, notice a quiet feed, reconnect.

:class:`Connection` owns one task that connects with websockets' public asyncio
client (TLS with an optional private CA, the bearer token in a header), hands the
first frame to :meth:`~.session.ClientSession.open` as the hello and every later one
to :meth:`~.session.ClientSession.receive`, and sends what the session asks to. A
writer task per connection sends requests as they come due and a ping every
``ping_interval``; a connection silent for the session's ``stale_after`` is dropped
(a watchdog, as cryptofeed keeps for feeds that go quiet).

When a connection ends, the one :class:`~ticker_server.backoff.Backoff` says how long
to wait. It starts again from its base only after a connection stayed live for
``stable_after`` seconds, so a server that greets and hangs up cannot drive a tight
reconnect loop, and a close with 1013 (try again later) or 1008 (policy) waits
longer still (:func:`~.retry.close_floor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ticker_server.protocol import MAX_FRAME, RequestId, ServerMessage

from .edge import shorten
from .events import ClientEvent, ConnectionState, RequestFailed, StateChanged
from .redact import MaskedLogger, redact_url, url_secrets
from .retry import Backoff, close_floor, describe_close, describe_error
from .session import ClientSession, ProtocolMismatch
from .watched import WatchChange

__all__ = ["Connection", "ssl_context"]

log = logging.getLogger("ticker_desktop.client")

SLICE = 0.01
"""Seconds of frame handling after which the reader yields to the event loop."""


def ssl_context(url: str, cafile: str | None) -> ssl.SSLContext | None:
    """The TLS settings for ``url`` (None for ws://): the system's trust store, or ``cafile``."""
    if not url.startswith("wss://"):
        return None
    return ssl.create_default_context(cafile=cafile)


class Connection:
    """Keeps ``session`` connected to ``url`` until :meth:`close`.

    Args:
        url: ``ws://`` or ``wss://`` address of a ticker_server.
        session: the protocol state it feeds; its options give the timings.
        emit: called with every event for the listeners, in order.
        rng: random source for the backoff jitter.
    """

    def __init__(
        self,
        url: str,
        session: ClientSession,
        emit: Callable[[ClientEvent], None],
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        """The URL as logged and shown: a password or ``?token=`` in it masked."""
        self.session = session
        self.options = options = session.options
        self.state = ConnectionState.IDLE
        self.backoff = Backoff(options.backoff_base, options.backoff_cap, rng)
        self._emit = emit
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[RequestId, asyncio.Future[ServerMessage]] = {}
        self._due = asyncio.Event()
        """Set when the session may have requests to send."""
        self._retry_now = asyncio.Event()
        self._again = False
        self._send_lock = asyncio.Lock()
        self._live_since: float | None = None
        self._closed_with: tuple[int | None, str] = (None, "")
        session.watched.add_listener(self._on_watched)

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def start(self) -> None:
        """Start connecting (in the running loop); it reconnects until closed."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ticker-client")

    async def close(self) -> None:
        """Stop for good: cancel the connection task and wait until it has finished."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.session.watched.remove_listener(self._on_watched)
        self._fail_waiters(ConnectionError("client closed"))
        self._set_state(ConnectionState.CLOSED)

    async def reconnect(self) -> None:
        """Drop the current connection, or cut a backoff wait short, and connect again now."""
        self._again = True
        self._retry_now.set()
        ws = self._ws
        if ws is not None:
            await ws.close(1000, "reconnecting")

    async def flush(self) -> None:
        """Send what the session has due now (nothing when not connected)."""
        ws = self._ws
        if ws is not None:
            await self._send(ws)

    async def request(self, rid: RequestId) -> ServerMessage:
        """Send the session's request ``rid`` and wait for its answer.

        Raises:
            ConnectionError: the connection dropped before the answer came.
            RequestFailed: the server answered with an error.
        """
        waiter: asyncio.Future[ServerMessage] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = waiter
        try:
            await self.flush()
            return await waiter
        finally:
            self._waiters.pop(rid, None)

    # -- the connection loop -----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._set_state(ConnectionState.CONNECTING, attempt=self.backoff.attempt)
            refused = False
            code: int | None = None
            self._live_since = None
            try:
                await self._connect()
                code, reason = self._closed_with
                detail = describe_close("connection closed by server", code, reason)
            except ConnectionClosed as exc:
                # rcvd: the server's close; sent alone: ours (e.g. 1009 for a frame too big).
                close = exc.rcvd or exc.sent
                code = close.code if close else 1006
                what = "connection lost" if exc.rcvd or not exc.sent else "we closed the connection"
                detail = describe_close(what, code, close.reason if close else "")
            except (OSError, TimeoutError) as exc:
                detail = describe_error(exc)
            except (InvalidHandshake, InvalidURI, ProtocolMismatch) as exc:
                detail = describe_error(exc)
                refused = True
            except Exception:
                log.exception("unexpected error in the connection to %s", self.shown_url)
                detail = "internal error"
            self.session.closed()
            self._deliver()
            live = self._live_since
            if live is not None and time.monotonic() - live >= self.options.stable_after:
                self.backoff.reset()
            floor = close_floor(code, self.options.retry_later, self.options.policy_wait)
            delay = 0.0 if self._again else self.backoff.next_delay(floor)
            self._again = False
            self._retry_now.clear()
            detail = shorten(detail, 200)
            log.info("%s: %s; reconnecting in %.2f s", self.shown_url, detail, delay)
            state = ConnectionState.ERROR if refused else ConnectionState.RECONNECTING
            self._set_state(state, detail, retry_in=delay)
            # reconnect() may cut the wait short.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._retry_now.wait()
            self._again = False

    async def _connect(self) -> None:
        opts = self.options
        async with connect(
            self.url,
            open_timeout=opts.open_timeout,
            close_timeout=opts.close_timeout,
            max_size=MAX_FRAME,
            compression=None,
            additional_headers={"Authorization": f"Bearer {opts.token}"} if opts.token else None,
            ssl=ssl_context(self.url, opts.cafile),
            logger=MaskedLogger(
                logging.getLogger("websockets.client"), opts.token, *url_secrets(self.url)
            ),
        ) as ws:
            try:
                await self._live(ws)
            finally:
                self._closed_with = (ws.close_code, ws.close_reason or "")

    async def _live(self, ws: ClientConnection) -> None:
        timeout = self.options.open_timeout
        try:
            async with asyncio.timeout(timeout):
                first = await ws.recv()
        except TimeoutError:
            raise TimeoutError(f"no hello within {timeout:g} s") from None
        try:
            self.session.open(first)
        finally:
            self._deliver()
        self._ws = ws
        writer = asyncio.get_running_loop().create_task(self._write(ws), name="ticker-writer")
        try:
            self._live_since = time.monotonic()
            self._set_state(ConnectionState.LIVE)
            await self._send(ws)
            await self._read(ws, self.session.stale_after())
        finally:
            self._ws = None
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self.session.closed()
            self._deliver()
            self._fail_waiters(ConnectionError("connection lost"))

    async def _read(self, ws: ClientConnection, stale_after: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(stale_after) as deadline:
                yield_at = loop.time() + SLICE
                async for raw in ws:
                    now = loop.time()
                    deadline.reschedule(now + stale_after)
                    self.session.receive(raw)
                    self._deliver()
                    if now > yield_at:
                        # Queued frames do not suspend recv(): let Qt paint between them.
                        await asyncio.sleep(0)
                        yield_at = loop.time() + SLICE
        except TimeoutError:
            raise TimeoutError(f"no message for {stale_after:.0f} s (stale connection)") from None

    async def _write(self, ws: ClientConnection) -> None:
        """Send requests as they come due, and a ping every ``ping_interval``."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.options.ping_interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_ping):
                    await self._due.wait()
            self._due.clear()
            if loop.time() >= next_ping:
                self.session.ping()
                self._deliver()
                next_ping = loop.time() + self.options.ping_interval
            await self._send(ws)

    async def _send(self, ws: ClientConnection) -> None:
        async with self._send_lock:  # taken before the session's queue, so requests keep order
            for text in self.session.data_to_send():
                # A send on a dropping connection is not an error: the reconnect asks again.
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(text)

    # -- plumbing ----------------------------------------------------------------------------

    def _on_watched(self, _change: WatchChange) -> None:
        if self._ws is not None:
            self._due.set()

    def _deliver(self) -> None:
        """Hand the session's events to the listeners and its answers to their waiters."""
        for event in self.session.events_received():
            self._emit(event)
        for answer in self.session.answers_received():
            waiter = self._waiters.pop(answer.id, None)
            if waiter is None or waiter.done():
                continue
            if answer.error is not None:
                waiter.set_exception(RequestFailed(answer.error))
            elif answer.message is not None:
                waiter.set_result(answer.message)

    def _fail_waiters(self, exc: Exception) -> None:
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(exc)

    def _set_state(
        self,
        state: ConnectionState,
        detail: str = "",
        retry_in: float | None = None,
        attempt: int = 0,
    ) -> None:
        self.state = state
        self._emit(StateChanged(state, self.shown_url, detail, retry_in, attempt))
