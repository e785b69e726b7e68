"""Answering ``bars`` requests and encoding bars for the wire (pure: store in, bytes out).

A page is the newest ``limit`` bars that start before ``before`` (or all up to the newest),
oldest first, split into ``bars`` frames of at most :data:`~.protocol.MAX_FRAME`
bytes; the last frame says ``"done":true``. The forming bar, when the page reaches
it, comes last and is marked ``"partial":true`` until the store has taken a tick at or after
its end (see :attr:`~.bars.BarStore.watermark`).
"""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt

from .bars import BAR_DTYPE, BarStore
from .protocol import MAX_FRAME, BarsRequest, ProtocolError, RequestId

__all__ = ["answer_bars", "encode_bar", "encode_bar_update", "select_bars"]


def _price(cents: int) -> str:
    return repr(cents / 100)


def encode_bar(row: tuple[int, ...], partial: bool = False) -> bytes:
    """One bar (``t, o, h, l, c, v, n`` with prices in cents) as a JSON object."""
    t, o, h, l, c, v, n = row  # noqa: E741
    tail = ',"partial":true}' if partial else "}"
    return (
        f'{{"t":{t},"o":{_price(o)},"h":{_price(h)},"l":{_price(l)},"c":{_price(c)},'
        f'"v":{v},"n":{n}{tail}'
    ).encode()


def encode_bar_update(symbol: str, interval: int, row: tuple[int, ...], partial: bool) -> bytes:
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
    rows = page.tolist()
    parts = [encode_bar(row) for row in rows]
    if partial:
        parts[-1] = encode_bar(rows[-1], True)
    head = f'{{"type":"bars","symbol":"{symbol}","interval":{interval},"bars":['.encode()
    return _frames(head, request.id, parts)
