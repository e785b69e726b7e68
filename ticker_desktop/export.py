"""Files made from what the dashboard holds: a symbol's ticks as CSV (Qt-free, no network).

Kept apart from the window so that other exports (bars, for one) join it here and can be
tested without a display.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from .store import SymbolSeries

__all__ = ["TICK_COLUMNS", "export_ticks_csv"]

TICK_COLUMNS = ("seq", "ts", "price", "bid", "ask", "size", "volume", "merged", "high", "low")
"""The tick fields written, after ``symbol`` and a local ``time`` a spreadsheet can read."""


def export_ticks_csv(series: SymbolSeries, path: str | Path) -> int:
    """Write every tick ``series`` holds, oldest first, as CSV; returns the number of rows.

    Raises:
        OSError: the file cannot be written.
    """
    cols = series.ticks.columns()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["symbol", "time", *TICK_COLUMNS])
        for i in range(len(cols["seq"])):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(float(cols["ts"][i])))
            writer.writerow([series.symbol, stamp, *(cols[n][i].item() for n in TICK_COLUMNS)])
    return len(cols["seq"])
