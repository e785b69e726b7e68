"""The owner of the server's long-lived tasks: nothing ends unnoticed.

A task that dies (the feed, the gateway's maintenance pass, the Redis reader or
writer) would otherwise leave a server that accepts clients and sends
heartbeats while delivering nothing. Each runs under a :class:`Supervisor`,
which logs the traceback, marks the server degraded with a reason (``/healthz``
answers 503) and restarts the task with exponential backoff; the fault clears
once the restarted task has run for ``stable_after`` seconds. Every task keeps
its state in its owner (the market, the books, the bus cursor), so a restart
resumes where it failed rather than from scratch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .backoff import Backoff

__all__ = ["RESTART_BASE", "RESTART_CAP", "STABLE_AFTER", "Supervisor"]

log = logging.getLogger("ticker_server.supervision")

RESTART_BASE = 0.5
"""Ceiling of the first restart delay, in seconds; it doubles with each failure in a row."""
RESTART_CAP = 30.0
"""Longest restart delay, in seconds."""
STABLE_AFTER = 5.0
"""Seconds a restarted task must run before its fault clears (and its backoff resets)."""


class Supervisor:
    """Runs tasks, restarting the ones that fail, and says which are failing.

    Args:
        stable_after: seconds after a restart before the task counts as healthy again.
        base: ceiling of the first restart delay.
        cap: longest restart delay.
    """

    def __init__(
        self,
        stable_after: float = STABLE_AFTER,
        base: float = RESTART_BASE,
        cap: float = RESTART_CAP,
    ) -> None:
        self.stable_after = stable_after
        self.base = base
        self.cap = cap
        self.faults: dict[str, str] = {}
        """Task name -> why it is failing, for those failed and not yet stable again."""
        self.failures = 0
        self._changed = asyncio.Event()
        self._clear: dict[str, asyncio.TimerHandle] = {}

    @property
    def reason(self) -> str | None:
        """Why the server is degraded, or None."""
        return "; ".join(self.faults.values()) or None

    async def changed(self) -> None:
        """Wait until a task fails or recovers."""
        self._changed.clear()
        await self._changed.wait()

    def spawn(
        self,
        name: str,
        run: Callable[[], Coroutine[Any, Any, None]],
        finished: Callable[[], bool] = lambda: False,
    ) -> asyncio.Task[None]:
        """Run ``run()`` as a task and restart it whenever it fails.

        Args:
            name: what the task is, in logs and in the degraded reason.
            run: makes the coroutine (called again for each restart).
            finished: whether the task may end now (e.g. its owner is closing); a task
                that returns while this is false has failed too.
        """
        loop = asyncio.get_running_loop()
        return loop.create_task(self._supervise(name, run, finished), name=name)

    async def _supervise(
        self, name: str, run: Callable[[], Coroutine[Any, Any, None]], finished: Callable[[], bool]
    ) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.base, self.cap)
        try:
            while True:
                started = loop.time()
                try:
                    await run()
                    if finished():
                        return
                    raise RuntimeError("ended on its own")
                except Exception as exc:
                    if finished():
                        return
                    if loop.time() - started >= self.stable_after:
                        backoff.reset()
                    delay = backoff.next_delay()
                    log.error("%s failed; restarting in %.1f s", name, delay, exc_info=exc)
                    self._fail(name, f"{name} failed ({type(exc).__name__}), restarting")
                await asyncio.sleep(delay)
                log.info("%s restarted", name)
                self._clear[name] = loop.call_later(self.stable_after, self._recover, name)
        finally:
            handle = self._clear.pop(name, None)
            if handle is not None:
                handle.cancel()
            if self.faults.pop(name, None) is not None:
                self._changed.set()

    def _fail(self, name: str, reason: str) -> None:
        handle = self._clear.pop(name, None)
        if handle is not None:
            handle.cancel()
        self.failures += 1
        self.faults[name] = reason
        self._changed.set()

    def _recover(self, name: str) -> None:
        self._clear.pop(name, None)
        if self.faults.pop(name, None) is not None:
            log.info("%s healthy again", name)
            self._changed.set()
