"""Answering ``bars`` requests and encoding bars for the wire (pure: store in, bytes out).

A page is the newest ``limit`` bars that start before ``before`` (or all up to the newest),
oldest first, split into ``bars`` frames of at most :data:`~.protocol.MAX_FRAME`
bytes; the last frame says ``"done":true``. The forming bar, when the page reaches
it, comes last and is marked ``"partial":true`` until the store has taken a tick at or after
its end (see :attr:`~.bars.BarStore.watermark`).
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .bars import BAR_DTYPE, BarStore
from .protocol import MAX_FRAME, BarsRequest, ProtocolError, RequestId

__all__ = [
    "STEP",
    "BarsAnswer",
    "EncodedRuns",
    "answer_bars",
    "encode_bar",
    "encode_bar_update",
    "encode_bars",
    "encode_run",
    "select_bars",
    "start_answer",
]


# Prices as whole cents written "%d.%02d": the decimal parses to the same double as
# cents / 100 (both are the nearest to it), and integer formatting is ~3x faster than repr.
_BAR = '{"t":%d,"o":%d.%02d,"h":%d.%02d,"l":%d.%02d,"c":%d.%02d,"v":%d,"n":%d}'
_PARTIAL = _BAR[:-1] + ',"partial":true}'


def _split(row: Sequence[int]) -> tuple[int, ...]:
    t, o, h, l, c, v, n = row  # noqa: E741
    return (t, o // 100, o % 100, h // 100, h % 100, l // 100, l % 100, c // 100, c % 100, v, n)


def encode_bar(row: Sequence[int], partial: bool = False) -> bytes:
    """One bar (``t, o, h, l, c, v, n`` with prices in cents) as a JSON object."""
    return ((_PARTIAL if partial else _BAR) % _split(row)).encode()


def encode_bars(bars: npt.NDArray[np.void]) -> list[bytes]:
    """Many bars as JSON objects, the cents split in numpy (the answer's hot loop)."""
    if len(bars) == 0:
        return []
    columns = [bars["t"]]
    for name in "ohlc":
        whole, cents = np.divmod(bars[name], 100)
        columns += [whole, cents]
    rows = np.stack([*columns, bars["v"], bars["n"]], axis=1).tolist()
    return [(_BAR % tuple(row)).encode() for row in rows]


@functools.lru_cache(maxsize=16)
def _run_format(count: int, partial: bool) -> str:
    return ",".join([_BAR] * (count - 1) + [_PARTIAL if partial else _BAR])


def encode_run(bars: npt.NDArray[np.void], partial: bool = False) -> bytes:
    """Consecutive bars as their JSON objects joined by commas, in one formatting call
    (about 2.5x cheaper than one call per bar); ``partial`` marks the last one."""
    if len(bars) == 0:
        return b""
    columns = [bars["t"]]
    for name in "ohlc":
        whole, cents = np.divmod(bars[name], 100)
        columns += [whole, cents]
    flat = np.stack([*columns, bars["v"], bars["n"]], axis=1).ravel().tolist()
    return (_run_format(len(bars), partial) % tuple(flat)).encode()


def encode_bar_update(symbol: str, interval: int, row: Sequence[int], partial: bool) -> bytes:
    """A live ``bar`` message (``symbol`` matches SYMBOL_PATTERN: no escaping needed)."""
    flag = b"true" if partial else b"false"
    return (
        f'{{"type":"bar","symbol":"{symbol}","interval":{interval},"bar":'.encode()
        + encode_bar(row, partial)
        + b',"partial":'
        + flag
        + b"}"
    )


def select_bars(
    store: BarStore, symbol: str, interval: int, limit: int, before: int | None
) -> tuple[npt.NDArray[np.void], bool]:
    """The page's bars (oldest first) and whether the last of them is still forming."""
    series = store.series[symbol][interval]
    closed = series.closed
    forming = series.forming
    if forming is not None and (before is None or forming[0] < before):
        take = closed[max(len(closed) - (limit - 1), 0) :] if limit > 1 else closed[:0]
        page = np.empty(len(take) + 1, dtype=BAR_DTYPE)
        page[:-1] = take
        page[-1] = tuple(forming)
        return page, store.watermark < (forming[0] + interval) * 1_000_000
    end = len(closed) if before is None else int(np.searchsorted(closed["t"], before, "left"))
    return closed[max(end - limit, 0) : end], False


STEP = 256
"""Intervals of time per run (so at most this many bars) that :meth:`BarsAnswer.step`
encodes: a fraction of a millisecond of work, so an answer written across loop turns never
holds the loop much longer than that; and at most about 39 KB however large the numbers
(152 bytes a bar), so a run always fits one frame."""


RunKey = tuple[str, int, int, int]
"""A run of closed bars: symbol, interval, the first bar's ``t``, how many bars."""


class EncodedRuns:
    """Encoded runs of closed bars, shared by every answer from one store (LRU, bounded in bytes).

    Closed bars never change, so a run of them is encoded once however many clients page
    over it. Runs are cut on a time grid (:data:`STEP` intervals wide), so pages that start
    anywhere share every run but their first. The forming bar is never cached.

    Args:
        capacity: bytes of encoded runs kept, the least recently used dropped first.
    """

    def __init__(self, capacity: int = 16 * 1024 * 1024) -> None:
        self.capacity = capacity
        self.nbytes = 0
        self.hits = 0
        self._runs: OrderedDict[RunKey, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, key: RunKey) -> bytes | None:
        data = self._runs.get(key)
        if data is not None:
            self._runs.move_to_end(key)
            self.hits += 1
        return data

    def put(self, key: RunKey, data: bytes) -> None:
        if key in self._runs or len(data) > self.capacity:
            return
        self._runs[key] = data
        self.nbytes += len(data)
        while self.nbytes > self.capacity:
            self.nbytes -= len(self._runs.popitem(last=False)[1])


class BarsAnswer:
    """One ``bars`` answer, encoded a run at a time (pure: no clock, no I/O).

    The page is copied when the request is answered, so the frames are what
    :func:`answer_bars` would have returned then, however many loop turns they take;
    closed bars never change, and the forming bar is frozen as it was.

    Args:
        page: the page's bars, oldest first.
        partial: the last bar is still forming.
        head: the frames' opening bytes, up to the bars array's ``[``.
        rid: the request's id.
        key: the page's symbol and interval.
        closed: how many of the page's bars are closed (the rest, the forming one, is not cached).
        runs: the cache of encoded runs (None: encode every run).
    """

    __slots__ = (
        "_chunk", "_closed", "_done_tail", "_head", "_key", "_more", "_next", "_page",
        "_partial", "_runs", "_size",
    )  # fmt: skip

    def __init__(
        self,
        page: npt.NDArray[np.void],
        partial: bool,
        head: bytes,
        rid: RequestId,
        key: tuple[str, int],
        closed: int,
        runs: EncodedRuns | None = None,
    ) -> None:
        self._page = page
        self._partial = partial
        self._head = head
        self._key = key
        self._closed = closed
        self._runs = runs
        self._more = b'],"id":' + json.dumps(rid).encode() + b',"done":false}'
        self._done_tail = self._more.replace(b'"done":false', b'"done":true')
        self._next = 0
        """Index of the first bar not yet encoded (past the end once the last frame is out)."""
        self._chunk: list[bytes] = []
        self._size = len(head) + len(self._done_tail)

    @property
    def done(self) -> bool:
        """Every frame has been returned."""
        return self._next > len(self._page)

    def step(self) -> list[bytes]:
        """Encode the next run (the page's bars in one :data:`STEP`-interval slot of time);
        the frames it completed (often none).

        Frames break between runs, never inside one, so the frames do not depend on
        when the steps are taken nor on what the cache holds.
        """
        page, begin = self._page, self._next
        if begin > len(page):
            return []
        frames: list[bytes] = []
        end = begin
        if begin < len(page):
            t = page["t"]
            symbol, interval = self._key
            span = STEP * interval
            end = int(np.searchsorted(t, (int(t[begin]) // span + 1) * span, "left"))
            key = (symbol, interval, int(t[begin]), end - begin)
            runs = self._runs if end <= self._closed else None
            part = None if runs is None else runs.get(key)
            if part is None:
                part = encode_run(page[begin:end], self._partial and end == len(page))
                if runs is not None:
                    runs.put(key, part)
            if self._chunk and self._size + len(part) + 1 > MAX_FRAME:
                frames.append(self._head + b",".join(self._chunk) + self._more)
                self._chunk, self._size = [], len(self._head) + len(self._done_tail)
            self._chunk.append(part)
            self._size += len(part) + 1
        self._next = end
        if end == len(page):
            frames.append(self._head + b",".join(self._chunk) + self._done_tail)
            self._chunk, self._next = [], end + 1
        return frames


def start_answer(
    store: BarStore, request: BarsRequest, runs: EncodedRuns | None = None
) -> BarsAnswer:
    """The answer to one ``bars`` request, its page taken now and encoded as it is stepped.

    Raises:
        ProtocolError: ``unknown_symbol`` for a symbol the store does not hold.
    """
    symbol = request.symbol.strip().upper()
    if symbol not in store.series:
        raise ProtocolError(
            "unknown_symbol", f"symbol: unknown symbol {request.symbol[:20]!r}", request.id
        )
    interval = request.interval
    page, partial = select_bars(store, symbol, interval, request.limit, request.before)
    forming = store.series[symbol][interval].forming
    holds_forming = forming is not None and len(page) > 0 and int(page["t"][-1]) == forming[0]
    head = f'{{"type":"bars","symbol":"{symbol}","interval":{interval},"bars":['.encode()
    # A copy: the ring the page views may take new bars or compact while the answer is written.
    return BarsAnswer(
        page.copy(), partial, head, request.id, (symbol, interval),
        len(page) - holds_forming, runs,
    )  # fmt: skip


def answer_bars(
    store: BarStore, request: BarsRequest, runs: EncodedRuns | None = None
) -> list[bytes]:
    """The frames that answer one ``bars`` request, all at once.

    Raises:
        ProtocolError: ``unknown_symbol`` for a symbol the store does not hold.
    """
    answer = start_answer(store, request, runs)
    frames: list[bytes] = []
    while not answer.done:
        frames += answer.step()
    return frames
