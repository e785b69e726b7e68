"""Microseconds per tick that ``MarketStore.ingest`` costs, for a snapshot and for live frames.

Run: ``python -m benchmarks.ingest_cost``. Ticks are built before the clock starts, so
only the store's work is timed (decoding is the client's and is measured elsewhere).
"""

from __future__ import annotations

import time

import numpy as np

from ticker_desktop.store import MarketStore
from ticker_server.protocol import Tick

__all__ = ["main"]


def _ticks(symbol: str, first_seq: int, n: int, rng: np.random.Generator) -> list[Tick]:
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, n)))
    t0 = 1.7e9 + first_seq * 0.01
    return [
        Tick.model_construct(
            symbol=symbol, seq=first_seq + k, ts=t0 + 0.01 * k, price=float(p),
            bid=float(p) - 0.01, ask=float(p) + 0.01, size=100, volume=100 * (first_seq + k),
            merged=None, high=None, low=None, open=None,
        )
        for k, p in enumerate(prices)
    ]  # fmt: skip


def per_tick_us(symbols: int, per_symbol: int, frames: int) -> float:
    """Microseconds per tick over ``frames`` frames of ``per_symbol`` ticks of each symbol."""
    rng = np.random.default_rng(1)
    store = MarketStore()
    names = [f"S{i}" for i in range(symbols)]
    for name in names:
        store.add(name)
    batches = []
    for f in range(frames):
        batch: list[Tick] = []
        for name in names:
            batch.extend(_ticks(name, 1 + f * per_symbol, per_symbol, rng))
        batches.append(batch)
    started = time.perf_counter()
    for batch in batches:
        store.ingest(batch)
    return (time.perf_counter() - started) / (frames * symbols * per_symbol) * 1e6


def main() -> None:
    for label, symbols, per_symbol, frames in (
        ("snapshot 1 x 1000", 1, 1000, 20),
        ("frame 20 symbols x 20 ticks", 20, 20, 100),
        ("frame 20 symbols x 5 ticks", 20, 5, 400),
        ("frame 20 symbols x 1 tick", 20, 1, 1000),
    ):
        print(f"{label:32s} {per_tick_us(symbols, per_symbol, frames):6.2f} us/tick")


if __name__ == "__main__":
    main()
