"""A session of history before the feed goes live, generated with numpy in one pass (pure).

:func:`generate` draws the same model as :class:`~.market.Market` (correlated
log-normal paths with a shared factor and jumps, calm and burst arrival regimes,
Pareto lot sizes, spreads in basis points) but vectorised over all ticks at once:
20 symbols x 6.5 h x 5 ticks/s is 2.3 M ticks, which a per-tick loop would take
tens of seconds to make. :meth:`Backfill.continue_market` then hands each symbol's
last price, seq, volume and factor position to the live market, so the live feed
continues the history without a seam. The same seed gives the same history.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .bars import BarStore
from .market import DEFAULT_DYNAMICS, TRADING_YEAR, Dynamics, Listing, Market
from .protocol import Tick

__all__ = [
    "MAX_BACKFILL_TICKS",
    "Backfill",
    "SymbolHistory",
    "backfill_rng",
    "generate",
    "parse_duration",
]

MAX_BACKFILL_TICKS = 3_000_000
"""Expected ticks a backfill may hold (a session of 20 symbols at 5/s is 2.34 M): at higher
tick rates or more symbols the history is shortened, so start-up stays within seconds and
the arrays within a few hundred MB while they exist."""

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``6.5h``, ``90m``, ``45s``, ``1d`` or a plain number of seconds.

    Raises:
        ValueError: not a non-negative number with an optional unit s, m, h or d.
    """
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"expected a duration such as 6.5h, 90m or 0, not {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def backfill_rng(seed: int | None) -> np.random.Generator:
    """The history's own random stream for a feed's seed: the live ticks do not depend on
    how long a history was made."""
    return np.random.default_rng(None if seed is None else [seed, 0xBAC])


@dataclass(frozen=True, slots=True)
class SymbolHistory:
    """One symbol's generated ticks as arrays; tick ``i`` has seq ``i + 1``."""

    symbol: str
    t_us: npt.NDArray[np.int64]
    """Tick times in whole microseconds since the Unix epoch, non-decreasing."""
    cents: npt.NDArray[np.int64]
    sizes: npt.NDArray[np.int64]
    volume: npt.NDArray[np.int64]
    """Cumulative volume after each tick."""
    log_price: float
    """The path's unrounded log price at the last tick."""
    seen_factor: float
    """The market factor at the last tick, relative to its value at the end."""
    spread_u: npt.NDArray[np.float64]
    side_u: npt.NDArray[np.float64]

    @property
    def count(self) -> int:
        return len(self.t_us)


@dataclass(frozen=True, slots=True)
class Backfill:
    """The generated history of every symbol, ending at ``end`` (Unix seconds)."""

    end: float
    symbols: dict[str, SymbolHistory]
    spread_bps: float

    @property
    def count(self) -> int:
        return sum(h.count for h in self.symbols.values())

    def tail(self, count: int) -> list[Tick]:
        """The newest ``count`` ticks of every symbol as ticks, in time order."""
        ticks: list[tuple[int, int, Tick]] = []
        scale = self.spread_bps * 1e-4
        for h in self.symbols.values():
            first = max(h.count - count, 0)
            cents = h.cents[first:]
            spread = np.maximum(1, (cents * scale * (0.5 + h.spread_u[first:]) + 0.5).astype(int))
            bid = np.maximum(1, cents - (h.side_u[first:] * (spread + 1)).astype(int))
            rows = zip(
                h.t_us[first:].tolist(),
                cents.tolist(),
                bid.tolist(),
                (bid + spread).tolist(),
                h.sizes[first:].tolist(),
                h.volume[first:].tolist(),
                strict=True,
            )
            for seq, (t_us, c, b, a, size, volume) in enumerate(rows, first + 1):
                # Built without validation: every field comes straight from the generator.
                tick = Tick.model_construct(
                    symbol=h.symbol,
                    seq=seq,
                    ts=t_us / 1e6,
                    price=c / 100,
                    bid=b / 100,
                    ask=a / 100,
                    size=size,
                    volume=volume,
                )
                ticks.append((t_us, seq, tick))
        ticks.sort(key=lambda item: (item[0], item[1]))
        return [tick for _, _, tick in ticks]

    def fill(self, store: BarStore) -> None:
        """Aggregate every tick into ``store``'s bars, one vectorised pass per symbol."""
        for h in self.symbols.values():
            if h.count and h.symbol in store.series:
                store.ingest_arrays(h.symbol, h.count, h.t_us, h.cents, h.sizes)

    def continue_market(self, market: Market) -> None:
        """Start the live market where the history ends: same price path, seq and volume."""
        for h in self.symbols.values():
            if h.count:
                market.resume(
                    h.symbol,
                    log_price=h.log_price,
                    cents=int(h.cents[-1]),
                    seq=h.count,
                    volume=int(h.volume[-1]),
                    since=h.t_us[-1] / 1e6 - self.end,
                    seen_factor=h.seen_factor,
                )


def _arrival_times(
    duration: float, total_rate: float, dynamics: Dynamics, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Poisson arrivals in [0, duration) at a rate that switches between calm and burst."""
    calm = total_rate * dynamics.calm_share
    rates = (calm, calm * dynamics.burst_factor)
    p_burst = dynamics.burst_duration / (dynamics.burst_duration + dynamics.calm_duration)
    burst = bool(rng.random() < p_burst)
    mean_pair = dynamics.burst_duration + dynamics.calm_duration
    pairs = int(duration / mean_pair * 1.2) + 16
    lengths: list[npt.NDArray[np.float64]] = []
    covered = 0.0
    while covered < duration:
        chunk = np.empty(2 * pairs)
        first, second = (dynamics.burst_duration, dynamics.calm_duration)[:: 1 if burst else -1]
        chunk[0::2] = rng.exponential(first, pairs)
        chunk[1::2] = rng.exponential(second, pairs)
        lengths.append(chunk)
        covered += float(chunk.sum())
    length = np.concatenate(lengths)
    knots_t = np.concatenate(([0.0], np.cumsum(length)))
    slope = np.where((np.arange(len(length)) % 2 == 0) == burst, rates[1], rates[0])
    knots_op = np.concatenate(([0.0], np.cumsum(length * slope)))
    horizon = float(np.interp(duration, knots_t, knots_op))
    draw = int(horizon + 6 * math.sqrt(horizon) + 16)
    op = np.cumsum(rng.exponential(1.0, draw))
    while op[-1] < horizon:  # astronomically rare: draw more
        op = np.concatenate((op, op[-1] + np.cumsum(rng.exponential(1.0, draw))))
    op = op[op < horizon]
    return np.interp(op, knots_op, knots_t)


def generate(
    listings: Sequence[Listing],
    *,
    tick_rate: float,
    duration: float,
    end: float,
    rng: np.random.Generator,
    dynamics: Dynamics = DEFAULT_DYNAMICS,
) -> Backfill:
    """Generate ``duration`` seconds of every listing's ticks, ending at ``end``.

    Args:
        listings: the symbols, as the live market gets them.
        tick_rate: long-run mean ticks per second per symbol.
        duration: seconds of history (0: none).
        end: Unix time the history ends at (the live feed's start); every tick is before it.
        rng: the source of every random number.
        dynamics: market-wide parameters.
    """
    n = len(listings)
    times = _arrival_times(duration, n * tick_rate, dynamics, rng) if duration > 0 else np.empty(0)
    count = len(times)
    # Small integer keys sort by radix, and float32 draws halve the cost of the randomness.
    which = rng.integers(0, n, count, dtype=np.uint8 if n <= 256 else np.uint16)
    z = rng.standard_normal((2, count), dtype=np.float32)
    u = rng.random((3, count), dtype=np.float32)
    factor_scale = dynamics.market_volatility / math.sqrt(TRADING_YEAR)
    factor = np.cumsum(factor_scale * np.sqrt(np.diff(times, prepend=0.0)) * z[0])
    last_t = float(times[-1]) if count else 0.0
    factor_end = (float(factor[-1]) if count else 0.0) + factor_scale * math.sqrt(
        max(duration - last_t, 0.0)
    ) * float(rng.standard_normal())
    start_us = round((end - duration) * 1e6)
    t_us_all = start_us + np.round(times * 1e6).astype(np.int64)
    np.minimum(t_us_all, round(end * 1e6) - 1, out=t_us_all)  # strictly before the live feed
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(n + 1))
    jump_rate = dynamics.jumps_per_day / (6.5 * 3600.0)
    out: dict[str, SymbolHistory] = {}
    for k, listing in enumerate(listings):
        idx = order[bounds[k] : bounds[k + 1]]
        t = times[idx]
        vol2 = listing.volatility**2
        market_part = (listing.beta * dynamics.market_volatility) ** 2
        idio2 = vol2 * (1.0 - dynamics.jump_share) - market_part
        mu = (dynamics.drift - vol2 / 2.0) / TRADING_YEAR
        idio = math.sqrt(max(idio2, 0.0) / TRADING_YEAR)
        dt = np.diff(t, prepend=0.0)
        f = factor[idx]
        step = mu * dt + listing.beta * np.diff(f, prepend=0.0) + idio * np.sqrt(dt) * z[1][idx]
        jumps = rng.poisson(jump_rate * duration)
        if jumps and len(t):
            at = np.searchsorted(t, rng.uniform(0.0, duration, jumps))
            jump_mean = dynamics.jump_size * listing.volatility * math.sqrt(60.0 / TRADING_YEAR)
            sizes = jump_mean * rng.exponential(1.0, jumps) * rng.choice((-1.0, 1.0), jumps)
            keep = at < len(t)
            np.add.at(step, at[keep], sizes[keep])
        log_price = math.log(listing.price) + np.cumsum(step)
        cents = np.maximum(1, (np.exp(log_price) * 100.0 + 0.5).astype(np.int64))
        # (1 - u) ** (-1 / 1.5) as exp and log, which numpy does several times faster.
        lots = np.exp(np.log1p(-u[0][idx].astype(np.float64)) * (-1.0 / 1.5))
        sizes_k = 100 * np.minimum(250, lots.astype(np.int64))
        out[listing.symbol] = SymbolHistory(
            symbol=listing.symbol,
            t_us=t_us_all[idx],
            cents=cents,
            sizes=sizes_k,
            volume=np.cumsum(sizes_k),
            log_price=float(log_price[-1]) if len(t) else math.log(listing.price),
            seen_factor=(float(f[-1]) if len(t) else 0.0) - factor_end,
            spread_u=u[1][idx],
            side_u=u[2][idx],
        )
    return Backfill(end=end, symbols=out, spread_bps=dynamics.spread_bps)
