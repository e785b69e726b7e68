"""Answering ``bars`` requests and encoding bars for the wire (pure: store in, bytes out).

A page is the newest ``limit`` bars that start before ``before`` (or all up to the newest),
oldest first, split into ``bars`` frames of at most :data:`~.protocol.MAX_FRAME`
bytes; the last frame says ``"done":true``. The forming bar, when the page reaches
it, comes last and is marked ``"partial":true`` until the store has taken a tick at or after
its end (see :attr:`~.bars.BarStore.watermark`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .bars import BAR_DTYPE, BarStore
from .protocol import MAX_FRAME, BarsRequest, ProtocolError, RequestId

__all__ = ["answer_bars", "encode_bar", "encode_bar_update", "encode_bars", "select_bars"]


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


def _frames(head: bytes, rid: RequestId, parts: list[bytes]) -> list[bytes]:
    tail_more = b'],"id":' + json.dumps(rid).encode() + b',"done":false}'
    tail_done = tail_more.replace(b'"done":false', b'"done":true')
    frames: list[bytes] = []
    chunk: list[bytes] = []
    size = len(head) + len(tail_done)
    for part in parts:
        if chunk and size + len(part) + 1 > MAX_FRAME:
            frames.append(head + b",".join(chunk) + tail_more)
            chunk, size = [], len(head) + len(tail_done)
        chunk.append(part)
        size += len(part) + 1
    frames.append(head + b",".join(chunk) + tail_done)
    return frames


def answer_bars(store: BarStore, request: BarsRequest) -> list[bytes]:
    """The frames that answer one ``bars`` request.

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
    parts = encode_bars(page)
    if partial:
        parts[-1] = encode_bar(page[-1].tolist(), True)
    head = f'{{"type":"bars","symbol":"{symbol}","interval":{interval},"bars":['.encode()
    return _frames(head, request.id, parts)
