"""Files made from what the dashboard holds: a symbol's ticks or bars as CSV (Qt-free).

Kept apart from the window so that other exports (bars, for one) join it here and can be
tested without a display.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from .store import SymbolSeries

__all__ = ["BAR_COLUMNS", "TICK_COLUMNS", "export_bars_csv", "export_ticks_csv"]

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


BAR_COLUMNS = ("t", "open", "high", "low", "close", "volume", "count")
"""The candle fields written, after ``symbol``, ``interval`` and a local ``time``."""


def export_bars_csv(series: SymbolSeries, interval: float, path: str | Path) -> int:
    """Write every candle of width ``interval`` that ``series`` holds (history and live),
    oldest first, as CSV; returns the number of rows (the newest may still be forming).

    Raises:
        KeyError: the series has no candles of that width.
        OSError: the file cannot be written.
    """
    candles = series.candles[interval]
    cols = {name: candles.column(name).copy() for name in BAR_COLUMNS}
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["symbol", "interval", "time", *BAR_COLUMNS])
        for i in range(len(cols["t"])):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(float(cols["t"][i])))
            values = (cols[n][i].item() for n in BAR_COLUMNS)
            writer.writerow([series.symbol, f"{interval:g}", stamp, *values])
    return len(cols["t"])
