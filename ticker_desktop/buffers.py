"""The tick buffer of one symbol, and the home of every buffer name (pure: no Qt, no I/O).

The storage scheme is :mod:`.columns`'s, candles are :mod:`.candles`'s; their
public names are importable from here too, as they always were.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ticker_server.protocol import Tick

from .candles import CANDLE_COLUMNS, CANDLE_INTERVALS, CandleSeries, exact_intervals, suited_rate
from .columns import FIRST_ROOM, Columns

__all__ = [
    "CANDLE_COLUMNS",
    "CANDLE_INTERVALS",
    "FIRST_ROOM",
    "TICK_COLUMNS",
    "CandleSeries",
    "Columns",
    "TickBuffer",
    "exact_intervals",
    "suited_rate",
]

TICK_COLUMNS: dict[str, npt.DTypeLike] = {
    "seq": np.int64,
    "ts": np.float64,
    "price": np.float64,
    "bid": np.float64,
    "ask": np.float64,
    "size": np.int64,
    "volume": np.int64,
    "merged": np.int64,
    "high": np.float64,
    "low": np.float64,
}


class TickBuffer:
    """The ticks of one symbol, bounded, in sequence order; ticks that are not newer are dropped.

    Seqs compare only within one feed epoch: after the server's feed restarts,
    :meth:`rebase` lets the new run's seqs (which start again at 1) in.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._cols = Columns(capacity, TICK_COLUMNS)
        self._last_seq = 0
        self._last_ts = -math.inf

    def __len__(self) -> int:
        return len(self._cols)

    @property
    def capacity(self) -> int:
        return self._cols.capacity

    @property
    def added(self) -> int:
        """Rows appended since construction (the absolute index one past the newest row)."""
        return self._cols.evicted + len(self._cols)

    @property
    def evicted(self) -> int:
        """Rows dropped from the front (the absolute index of row 0)."""
        return self._cols.evicted

    @property
    def last_seq(self) -> int:
        """Seq of the newest tick held (0 when empty)."""
        return self._last_seq

    @property
    def last_ts(self) -> float:
        """Timestamp of the newest tick held (-inf when empty)."""
        return self._last_ts

    def append(self, tick: Tick) -> bool:
        """Store ``tick`` if it is newer than the newest held; return whether it was stored."""
        if tick.seq <= self._last_seq:
            return False
        i = self._cols.next_row()
        raw = self._cols.raw
        raw("seq")[i] = tick.seq
        raw("ts")[i] = tick.ts
        raw("price")[i] = tick.price
        raw("bid")[i] = tick.bid
        raw("ask")[i] = tick.ask
        raw("size")[i] = tick.size
        raw("volume")[i] = tick.volume
        raw("merged")[i] = tick.covers
        raw("high")[i] = tick.price if tick.high is None else tick.high
        raw("low")[i] = tick.price if tick.low is None else tick.low
        self._last_seq = tick.seq
        self._last_ts = tick.ts
        return True

    def extend(self, rows: Mapping[str, npt.NDArray[Any]]) -> None:
        """Append a batch of rows, one array per column of :data:`TICK_COLUMNS`, in one step.

        The caller has kept only ticks newer than the newest held, in seq order
        (see :meth:`MarketStore.ingest`); of a batch longer than the capacity
        only the newest rows are stored.
        """
        n = len(rows["seq"])
        if not n:
            return
        keep = min(n, self.capacity)
        i = self._cols.next_rows(keep)
        for name in TICK_COLUMNS:
            self._cols.raw(name)[i : i + keep] = rows[name][n - keep :]
        self._last_seq = int(rows["seq"][-1])
        self._last_ts = float(rows["ts"][-1])

    def rebase(self) -> None:
        """Start a new feed epoch: keep the data, accept any seq from now on."""
        self._last_seq = 0

    @property
    def nbytes(self) -> int:
        return self._cols.nbytes

    def column(self, name: str) -> npt.NDArray[Any]:
        """A zero-copy view of one column (``seq``, ``ts``, ``price``, ...), oldest first."""
        return self._cols.column(name)

    @property
    def ts(self) -> npt.NDArray[np.float64]:
        return self._cols.column("ts")

    @property
    def price(self) -> npt.NDArray[np.float64]:
        return self._cols.column("price")

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """Copies of every column (for export), oldest first."""
        return {name: self._cols.column(name).copy() for name in TICK_COLUMNS}
