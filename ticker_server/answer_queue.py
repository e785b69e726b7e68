"""Long answers written across loop turns, a slice per client in turn (the gateway's pacing).

A page of 5,000 one-second bars costs about 9 ms to encode; a hundred clients paging at
once would hold the event loop for seconds, and every other client's ticks with it. So a
``bars`` answer is encoded a slice at a time (:meth:`~.session.Session.pull`): each loop
turn serves the waiting clients round robin until :data:`BUDGET` is spent, then yields,
so a tick flush due meanwhile waits at most about one budget. A client above its buffer
limit is dropped from the round until upkeep unblocks it, so what a paging client that
stops reading has queued stays within max_buffer plus one frame.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from .delivery import Client

__all__ = ["BUDGET", "AnswerQueue"]

BUDGET = 0.001
"""Seconds of answer encoding per loop turn, at least one slice."""


class AnswerQueue:
    """The clients with an answer still being written, served fairly a slice at a time.

    Args:
        write: writes one frame to a client (at loop time).
        finished: called when a client's answer is out, to answer what it held meanwhile.
        budget: seconds of work per loop turn.
        clock: a monotonic clock for the budget.
    """

    def __init__(
        self,
        write: Callable[[Client, bytes, float], None],
        finished: Callable[[Client], None],
        budget: float = BUDGET,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._write = write
        self._finished = finished
        self._budget = budget
        self._clock = clock
        self._round: deque[Client] = deque()
        self._queued: set[Client] = set()
        self._handle: asyncio.Handle | None = None

    def __len__(self) -> int:
        return len(self._round)

    def add(self, client: Client) -> None:
        """Serve ``client``'s answer (again, after it was blocked) from the next loop turn."""
        if client in self._queued:
            return
        self._queued.add(client)
        self._round.append(client)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._turn)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._round.clear()
        self._queued.clear()

    def _turn(self) -> None:
        self._handle = None
        loop = asyncio.get_running_loop()
        at = loop.time()
        deadline = self._clock() + self._budget
        queue, queued = self._round, self._queued
        while queue:
            client = queue.popleft()
            session = client.session
            if session is None or client.closing or client.blocked or session.answering is None:
                queued.discard(client)  # gone, or blocked: unblocking adds it back
                continue
            for frame in session.pull():
                self._write(client, frame, at)
            if session.answering is None:
                queued.discard(client)
                self._finished(client)
            else:
                queue.append(client)
            if self._clock() >= deadline:
                break
        if queue:
            self._handle = loop.call_soon(self._turn)
