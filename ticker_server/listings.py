"""The symbols a market simulates: the default universe and plausible listings for any other.

A listing outside the universe is derived from a hash of its symbol and the seed, so every
process (feed, gateways, tests) that asks for the same symbols gets the same listings.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dynamics import DEFAULT_DYNAMICS
from .protocol import SYMBOL_PATTERN

__all__ = ["DEFAULT_UNIVERSE", "Listing", "listings_for"]


@dataclass(frozen=True, slots=True)
class Listing:
    """One tradable symbol and the parameters of its price path.

    Raises:
        ValueError: a field is out of range or the price is off the cent grid.
    """

    symbol: str
    name: str
    price: float
    volatility: float
    beta: float

    def __post_init__(self) -> None:
        if not SYMBOL_PATTERN.match(self.symbol):
            raise ValueError(f"invalid symbol {self.symbol!r}")
        if not (self.price >= 0.01 and abs(self.price * 100 - round(self.price * 100)) < 1e-6):
            raise ValueError(f"{self.symbol}: price {self.price} is not a positive cent amount")
        if not 0.0 < self.volatility < 10.0:
            raise ValueError(f"{self.symbol}: volatility {self.volatility} is out of range")
        if not math.isfinite(self.beta):
            raise ValueError(f"{self.symbol}: beta {self.beta} is not finite")


DEFAULT_UNIVERSE: tuple[Listing, ...] = (
    Listing("AAPL", "Apple Inc.", 210.00, 0.28, 1.20),
    Listing("MSFT", "Microsoft Corporation", 450.00, 0.24, 1.10),
    Listing("NVDA", "NVIDIA Corporation", 130.00, 0.50, 1.80),
    Listing("AMZN", "Amazon.com, Inc.", 200.00, 0.32, 1.30),
    Listing("GOOGL", "Alphabet Inc.", 170.00, 0.30, 1.10),
    Listing("META", "Meta Platforms, Inc.", 580.00, 0.38, 1.30),
    Listing("TSLA", "Tesla, Inc.", 250.00, 0.60, 2.00),
    Listing("JPM", "JPMorgan Chase & Co.", 240.00, 0.22, 1.05),
    Listing("V", "Visa Inc.", 330.00, 0.20, 0.95),
    Listing("MA", "Mastercard Incorporated", 540.00, 0.21, 1.05),
    Listing("JNJ", "Johnson & Johnson", 155.00, 0.17, 0.55),
    Listing("WMT", "Walmart Inc.", 95.00, 0.20, 0.65),
    Listing("XOM", "Exxon Mobil Corporation", 110.00, 0.26, 0.85),
    Listing("PG", "The Procter & Gamble Company", 165.00, 0.17, 0.45),
    Listing("HD", "The Home Depot, Inc.", 370.00, 0.23, 1.00),
    Listing("KO", "The Coca-Cola Company", 70.00, 0.15, 0.60),
    Listing("PEP", "PepsiCo, Inc.", 140.00, 0.18, 0.55),
    Listing("NFLX", "Netflix, Inc.", 1150.00, 0.38, 1.25),
    Listing("AMD", "Advanced Micro Devices, Inc.", 140.00, 0.52, 1.70),
    Listing("INTC", "Intel Corporation", 21.00, 0.45, 1.10),
)

_BY_SYMBOL = {listing.symbol: listing for listing in DEFAULT_UNIVERSE}


def _generated_listing(symbol: str, seed: int | None) -> Listing:
    # blake2b, not hash(): str hashes are salted per process, and the listing must be stable.
    digest = hashlib.blake2b(f"{seed}:{symbol}".encode(), digest_size=16).digest()
    draw = np.random.default_rng(int.from_bytes(digest, "big")).random(3).tolist()
    price = round(10.0 * 50.0 ** draw[0], 2)  # log-uniform, $10 to $500
    volatility = round(0.20 + 0.40 * draw[1], 3)
    # Keep beta * market vol well inside the diffusive vol so the model stays consistent.
    beta = round(min(0.6 + 0.9 * draw[2], 0.8 * volatility / DEFAULT_DYNAMICS.market_volatility), 2)
    return Listing(symbol, f"{symbol} Corp.", price, volatility, beta)


def listings_for(symbols: Sequence[str] | None, seed: int | None = None) -> list[Listing]:
    """The listings to simulate for the requested symbols.

    Args:
        symbols: symbols to list (stripped and upper-cased), or None for
            :data:`DEFAULT_UNIVERSE`. A symbol of the universe keeps its
            listing; any other valid symbol gets a plausible generated one,
            derived from a hash of the symbol and ``seed`` so it is the same
            on every run.
        seed: varies the generated listings; None gives the canonical ones.

    Raises:
        ValueError: the list is empty, or an entry is not a valid symbol or
            repeats an earlier one.
    """
    if symbols is None:
        return list(DEFAULT_UNIVERSE)
    if isinstance(symbols, str) or not symbols:
        raise ValueError("expected a non-empty list of symbols")
    listings: list[Listing] = []
    seen: set[str] = set()
    for entry in symbols:
        symbol = entry.strip().upper() if isinstance(entry, str) else ""
        if not SYMBOL_PATTERN.match(symbol):
            raise ValueError(
                f"invalid symbol {entry!r}: expected 1-12 characters of A-Z, 0-9, '.' and '-'"
            )
        if symbol in seen:
            raise ValueError(f"duplicate symbol {entry!r}")
        seen.add(symbol)
        listings.append(_BY_SYMBOL.get(symbol) or _generated_listing(symbol, seed))
    return listings
