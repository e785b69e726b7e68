"""Servers as real processes, started one way for every test: ``python -m MODULE FLAGS``.

A test that needs the command itself (signals, exit codes, two roles on one Redis, a
server killed and restarted, a load generator measuring the server's /proc) starts it
here. Readiness is an event, the server's own log line (``serving ws://127.0.0.1:PORT``),
never a sleep; stopping is a signal and a bounded wait; the log is kept for assertions
and echoed to this process's stderr, so pytest shows it beside a failing test.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping

from .timing import TIMEOUT

__all__ = ["READY", "START_TIMEOUT", "ServerProcess", "ServerProcesses", "SpawnServer"]

READY = r"serving (wss?://\S+)"
"""The line a ticker_server gateway (and the naive baseline) logs once it accepts clients."""
START_TIMEOUT = 4 * TIMEOUT
"""A fresh interpreter imports numpy, pydantic, redis and websockets before it listens."""


class ServerProcess:
    """One server child: its log, the line that said it was ready, and a bounded stop.

    Its log (stderr, or stdout where stderr is not piped) is read for as long as it
    runs, so a chatty server never blocks on a full pipe. :meth:`ServerProcesses.start`
    makes one for ``python -m``; another binary (redis-server) is wrapped directly.

    Args:
        process: the child, with its log piped.
        name: how its echoed log lines are prefixed.
    """

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.log: list[str] = []
        """Every line it wrote to stderr so far."""
        self.ready: re.Match[str] | None = None
        """The match of the ready pattern in its log."""
        self._changed = asyncio.Event()
        self._ended = False
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def url(self) -> str:
        """The URL from the ready line (its first group)."""
        assert self.ready is not None and self.ready.groups(), f"{self.name} logged no URL"
        return self.ready.group(1)

    def text(self) -> str:
        return "".join(self.log)

    async def _read(self) -> None:
        stream = self.process.stderr or self.process.stdout
        assert stream is not None
        async for raw in stream:
            line = raw.decode(errors="replace")
            self.log.append(line)
            sys.stderr.write(f"[{self.name} {self.pid}] {line}")
            self._changed.set()
        self._ended = True
        self._changed.set()

    async def wait_log(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Wait until a log line matches ``pattern``; each line read wakes the wait.

        Raises:
            AssertionError: it ended, or ``timeout`` passed, first (the message holds its log).
        """
        regex = re.compile(pattern)
        seen = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for line in self.log[seen:]:
                        found = regex.search(line)
                        if found:
                            return found
                    seen = len(self.log)
                    if self._ended:
                        raise AssertionError(
                            f"{self.name} exited ({await self.process.wait()}) before logging"
                            f" {pattern!r}:\n{self.text()}"
                        )
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name} logged no {pattern!r} within {timeout:.1f} s:\n{self.text()}"
            ) from None

    def send_signal(self, sig: signal.Signals) -> None:
        if self.process.returncode is None:
            self.process.send_signal(sig)

    async def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the exit and the end of its log; kill it and fail after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                code = await self.process.wait()
                await self._reader
        except TimeoutError:
            await self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {timeout:.1f} s:\n{self.text()}"
            ) from None
        return code

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        """Send ``sig`` (SIGTERM: a clean shutdown) and return the exit code, within ``timeout``."""
        self.send_signal(sig)
        return await self.wait(timeout)

    async def kill(self) -> None:
        """SIGKILL: no shutdown at all; returns once it is gone and its log is read."""
        self.send_signal(signal.SIGKILL)
        await self.process.wait()
        await self._reader


class ServerProcesses:
    """Starts server processes for one test and kills any still running at its end."""

    def __init__(self) -> None:
        self.started: list[ServerProcess] = []

    async def start(
        self,
        *flags: str,
        module: str = "ticker_server",
        ready: str = READY,
        timeout: float = START_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> ServerProcess:
        """Run ``python -m MODULE FLAGS`` and return it once a log line matches ``ready``.

        Args:
            flags: its command line (give ``--port 0`` for a free port).
            module: the server to run (``benchmarks.naive_server`` for the baseline).
            ready: the pattern of the line that says it is ready; its first group,
                if any, is :attr:`ServerProcess.url`.
            timeout: how long it may take to get ready.
            env: its environment (default: this process's).
        """
        if module == "ticker_server" and "--backfill" not in flags:
            # No history unless a test asks: a session of backfill costs seconds at every start.
            flags = ("--backfill", "0", *flags)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *flags,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=None if env is None else dict(env),
        )
        server = ServerProcess(process, module.rpartition(".")[2])
        self.started.append(server)
        server.ready = await server.wait_log(ready, timeout)
        return server

    async def close(self) -> None:
        """Kill what is still running; the log of each is read to its end."""
        for server in self.started:
            await server.kill()


SpawnServer = Callable[..., Awaitable[ServerProcess]]
"""The ``spawn_server`` fixture: :meth:`ServerProcesses.start`."""
