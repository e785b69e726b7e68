"""What one bench client counts and checks of the frames it receives (no I/O).

Every tick is counted; only some are parsed. Verified clients json-parse every frame and
check seq against merged; the others extract ``ts`` with a regex from a sampled share of
frames, sized so each worker parses about ``latency_rate`` ticks a second.
"""

from __future__ import annotations

import json
import re
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_EXAMPLES", "ClientSpec", "Sampler", "Tally"]

TICKS_PREFIX = b'{"type":"ticks"'
TS_RE = re.compile(rb'"ts":(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)')
MERGED_RE = re.compile(rb'"merged":([0-9]+)')
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class ClientSpec:
    index: int
    slow: bool = False
    verified: bool = False


@dataclass(eq=False)
class Sampler:
    """Worker-wide sampling state shared by its clients."""

    measuring: bool = False
    stride: int = 1
    left: int = 1
    latency: array[float] = field(default_factory=lambda: array("d"))
    freshness: array[float] = field(default_factory=lambda: array("d"))
    backlog: list[tuple[Callable[[bytes, float], None], bytes, float]] = field(default_factory=list)
    """Reads stamped but not yet parsed: who parses them, the bytes and when they were read."""

    def parse_backlog(self) -> None:
        backlog, self.backlog = self.backlog, []
        for consume, data, now in backlog:
            consume(data, now)


class Tally:
    """The counts and seq checks of one client.

    Args:
        spec: which client this is (slow, verified).
        sampler: the worker's sampling state.
        track_times: keep each verified update's receive time, for the per-second rate check.
        on_message: receives every message that is not ``ticks`` (hello, subscribed, ...).
    """

    def __init__(
        self,
        spec: ClientSpec,
        sampler: Sampler,
        track_times: bool,
        on_message: Callable[[dict[str, Any]], None],
    ) -> None:
        self.spec = spec
        self.sampler = sampler
        self.track_times = track_times
        self.on_message = on_message
        self.ticks = 0
        self.frames = 0
        self.nbytes = 0
        self.covered = 0
        """Generated ticks folded into merged updates (sum of merged - 1)."""
        self.other_frames = 0
        self.errors: Counter[str] = Counter()
        self.last_seq: dict[str, int] = {}
        self.held_ts: dict[str, float] = {}
        self.window_counts: Counter[str] = Counter()
        self.window_times: dict[str, list[float]] = {}
        self.merged_updates = 0
        self.unexplained = 0
        self.overcounted = 0
        self.reordered = 0
        self.examples: list[str] = []

    def on_frame(self, data: bytes, start: int, end: int, now: float) -> None:
        """Account for one text message held in ``data[start:end]``, read at ``now``."""
        if not data.startswith(TICKS_PREFIX, start):
            self.on_other(data[start:end], now)
            return
        self.ticks += data.count(b'"seq"', start, end)
        self.frames += 1
        self.nbytes += end - start
        if self.spec.verified:
            self.verify(json.loads(data[start:end])["ticks"], now)
            return
        if data.find(b'"merged"', start, end) >= 0:
            for merged in MERGED_RE.findall(data, start, end):
                self.covered += int(merged) - 1
        sampler = self.sampler
        if sampler.measuring and not self.spec.slow:
            sampler.left -= 1
            if sampler.left <= 0:
                sampler.left = sampler.stride
                latency = sampler.latency
                for ts in TS_RE.findall(data, start, end):
                    latency.append(now - float(ts))

    def verify(self, ticks: list[dict[str, Any]], now: float) -> None:
        """Check parsed ticks: seq against merged, held ts, per-symbol counts."""
        sampler = self.sampler
        sample = False
        if sampler.measuring and not self.spec.slow:
            sampler.left -= 1
            if sampler.left <= 0:
                sampler.left = sampler.stride
                sample = True
        measuring = sampler.measuring
        for tick in ticks:
            symbol = tick["symbol"]
            seq = tick["seq"]
            ts = tick["ts"]
            merged = tick.get("merged") or 1
            if merged > 1:
                self.merged_updates += 1
                self.covered += merged - 1
            last = self.last_seq.get(symbol)
            if last is not None and seq - last != merged:
                step = seq - last
                if step <= 0:
                    self.reordered += 1
                elif step > merged:
                    self.unexplained += 1
                else:
                    self.overcounted += 1
                if len(self.examples) < MAX_EXAMPLES:
                    self.examples.append(f"{symbol}: seq {last} -> {seq} with merged {merged}")
            self.last_seq[symbol] = seq
            self.held_ts[symbol] = ts
            if sample:
                sampler.latency.append(now - ts)
            if measuring:
                self.window_counts[symbol] += 1
                if self.track_times:
                    self.window_times.setdefault(symbol, []).append(now)

    def on_other(self, payload: bytes | str, now: float) -> None:
        """A message off the fast path: control messages, or ticks laid out differently."""
        try:
            message = json.loads(payload)
            kind = message.get("type")
        except (ValueError, AttributeError):
            self.errors["unparsable frame"] += 1
            return
        if kind == "ticks":
            ticks = message.get("ticks") or []
            self.ticks += len(ticks)
            self.frames += 1
            self.nbytes += len(payload)
            self.verify(ticks, now)
            return
        self.other_frames += 1
        if kind == "error":
            self.errors[f"error {message.get('code')}"] += 1
        self.on_message(message)
