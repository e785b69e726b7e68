"""Named numpy columns with a bounded row count: the storage of every buffer (pure).

The tick and candle buffers keep their newest rows contiguous so a chart can hand a zero-copy
view to pyqtgraph: rows are appended at the end of arrays a quarter larger than
the capacity, and when the end is reached the newest ``capacity`` rows are moved
to the front in one ``memmove``. The move costs about four element copies per
appended row.

The arrays start small and double as they fill, up to the capacity plus a
quarter, so a symbol costs memory for what it holds: 1,024 rows to start (80 KB
of ticks and 57 KB per candle width, about 250 KB a symbol, so 200 symbols take
about 50 MB). Every array is written when it is allocated, so the kernel
commits its pages then; once a buffer has reached its full size it is never
reallocated and RSS stays flat (``np.zeros`` would map pages lazily and RSS
would creep up as rows are first written). Full, a :class:`TickBuffer` of the
default 100,000 rows takes 10 MB (125,000 rows x 10 columns x 8 B) and a
:class:`CandleSeries` of the default 20,000 candles 1.4 MB (25,000 x 7 x 8 B).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FIRST_ROOM", "Columns"]

FIRST_ROOM = 1024
"""Rows a buffer starts with (a snapshot of 1,000 ticks fits); it doubles from there."""


class Columns:
    """Named, equally long numpy columns holding at most ``capacity`` rows, newest last.

    The arrays start at ``first`` rows and double as rows arrive, up to
    ``capacity`` plus a quarter; from then on they never change size again.
    """

    def __init__(
        self, capacity: int, dtypes: Mapping[str, npt.DTypeLike], first: int = FIRST_ROOM
    ) -> None:
        if capacity < 1 or first < 1:
            raise ValueError("capacity and first room must be at least 1")
        self.capacity = capacity
        self._room = capacity + max(capacity // 4, 1)
        self._dtypes = dict(dtypes)
        self._arrays = self._allocate(min(self._room, first))
        self._start = 0
        self._end = 0
        self.evicted = 0
        """Rows dropped from the front since construction (the absolute index of row 0)."""

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def nbytes(self) -> int:
        """Bytes the backing arrays take now (all of it committed)."""
        return sum(array.nbytes for array in self._arrays.values())

    def _allocate(self, rows: int) -> dict[str, npt.NDArray[Any]]:
        # np.full writes every element, so the pages are committed now, not on first append.
        return {name: np.full(rows, 0, dtype) for name, dtype in self._dtypes.items()}

    def next_row(self) -> int:
        """Reserve the slot of a new last row and return its index into the raw arrays."""
        return self.next_rows(1)

    def next_rows(self, count: int) -> int:
        """Reserve ``count`` new last rows; return the raw index of the first of them.

        The oldest rows beyond the capacity are dropped. ``count`` may not exceed
        the capacity (keep only the newest rows of a longer batch).
        """
        if not 0 < count <= self.capacity:
            raise ValueError("count must be between 1 and the capacity")
        size = len(next(iter(self._arrays.values())))
        if self._end + count > size:
            held = self._end - self._start
            if size < self._room:
                self._grow(min(self._room, max(2 * size, held + count)))
            if self._end + count > len(next(iter(self._arrays.values()))):
                self._compact(count)
        row = self._end
        self._end += count
        over = self._end - self._start - self.capacity
        if over > 0:
            self._start += over
            self.evicted += over
        return row

    def _grow(self, rows: int) -> None:
        arrays = self._allocate(rows)
        kept = self._end - self._start
        for name, array in arrays.items():
            array[:kept] = self._arrays[name][self._start : self._end]
        self._arrays = arrays
        self._start = 0
        self._end = kept

    def _compact(self, count: int) -> None:
        lo = max(self._start, self._end - (self.capacity - count))
        self.evicted += lo - self._start
        kept = self._end - lo
        for array in self._arrays.values():
            array[:kept] = array[lo : self._end]  # numpy buffers overlapping copies
        self._start = 0
        self._end = kept

    def raw(self, name: str) -> npt.NDArray[Any]:
        """The whole backing array of a column, for writing at an index from :meth:`next_row`.

        Take it after that call: a growing buffer gets new arrays there.
        """
        return self._arrays[name]

    def column(self, name: str) -> npt.NDArray[Any]:
        """A zero-copy view of one column's rows, oldest first (valid until the next append)."""
        return self._arrays[name][self._start : self._end]

    def last_index(self) -> int:
        """Raw index of the newest row (the buffer must not be empty)."""
        return self._end - 1
