"""The simulated market: correlated price paths, quotes, trade sizes and bursty arrivals.

This module is pure: no I/O, no asyncio, no clock. The caller passes the time
to :meth:`Market.advance` and a seeded :class:`numpy.random.Generator` to the
constructor, so a run is reproducible from its seed.

The model, per symbol:

* Log-price: geometric Brownian motion with a shared market factor. Over an
  interval ``dt`` (in years of 252 trading days of 6.5 hours) the log return is
  ``(drift - vol**2 / 2) * dt + beta * dM + idio * sqrt(dt) * Z`` plus any jumps,
  where ``M`` is one Brownian motion (volatility ``market_volatility``) shared by
  every symbol and ``idio`` is chosen so the total variance is ``vol**2``.
  Hence ``E[S_t] ~ S_0 * exp(drift * t)`` and two symbols' returns correlate
  with ``beta_i * beta_j * market_volatility**2 / (vol_i * vol_j)``.
* Jumps: Poisson, ``jumps_per_day`` per trading day, Laplace-distributed with a
  mean size of ``jump_size`` one-minute standard deviations; their variance is
  part of ``vol**2``, not added to it.
* Prices are the continuous path rounded half up to the cent (at least $0.01);
  the path itself is never rounded, so rounding adds no bias.
* Quotes: a spread of ``spread_bps`` basis points times U(0.5, 1.5), at least
  one cent, placed at random so that ``bid <= price <= ask`` and ``bid < ask``.
* Sizes: round lots with a Pareto tail (``P(lots >= k) = k**-1.5``, capped at
  250 lots): 93% are 100-500 shares, 3% are 1,000 or more.
* Arrivals: Poisson at a rate that switches between calm and burst periods
  (a two-state Markov chain shared by the whole market, burst rate
  ``burst_factor`` times the calm rate). The calm rate is
  ``tick_rate / (1 + (burst_factor - 1) * p)`` with
  ``p = burst_duration / (burst_duration + calm_duration)``, so the long-run
  mean is exactly ``tick_rate`` ticks per second per symbol.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .dynamics import DEFAULT_DYNAMICS, TRADING_DAY, TRADING_YEAR, Dynamics
from .listings import DEFAULT_UNIVERSE, Listing, listings_for
from .protocol import Tick

__all__ = [
    "DEFAULT_DYNAMICS",
    "DEFAULT_UNIVERSE",
    "TRADING_DAY",
    "TRADING_YEAR",
    "Dynamics",
    "Listing",
    "Market",
    "listings_for",
]

_STALL_GAP = 1.0  # seconds behind after which advance() may skip arrivals
_BLOCK = 4096  # ticks' worth of random numbers drawn per numpy call
_SIZE_EXPONENT = -1.0 / 1.5  # Pareto tail index 1.5 for trade sizes in lots
_MAX_LOTS = 250


class _SymbolState:
    """The mutable path of one symbol; times are seconds since the market's start."""

    def __init__(self, listing: Listing, dynamics: Dynamics, jump_rate: float) -> None:
        vol2 = listing.volatility**2
        idio2 = (
            vol2 * (1.0 - dynamics.jump_share) - (listing.beta * dynamics.market_volatility) ** 2
        )
        if idio2 < 0.0:
            raise ValueError(
                f"{listing.symbol}: beta {listing.beta} times market volatility "
                f"{dynamics.market_volatility} exceeds its diffusive volatility"
            )
        self.symbol = listing.symbol
        self.beta = listing.beta
        self.mu = (dynamics.drift - vol2 / 2.0) / TRADING_YEAR  # log drift per second
        self.idio = math.sqrt(idio2 / TRADING_YEAR)  # per sqrt(second)
        self.jump_mean = dynamics.jump_size * listing.volatility * math.sqrt(60.0 / TRADING_YEAR)
        self.log_price = math.log(listing.price)
        self.cents = round(listing.price * 100)
        self.time = 0.0
        self.seen_factor = 0.0  # the market factor at this symbol's last tick
        self.next_jump = math.inf if jump_rate == 0 else 0.0
        self.seq = 0
        self.volume = 0


class Market:
    """A simulated market that produces ticks for the arrivals up to a given time.

    The ticks (symbols, prices, quotes, sizes) depend only on the generator's
    seed: :meth:`advance` can be called at any cadence and returns the same
    ticks, only stamped with different ``ts``. The one exception is a stall:
    when ``now`` is more than 1 s past the time the market was last advanced
    to *and* past the window in which ``max_batch / 2`` ticks are expected at
    the burst rate, the arrivals before that window are skipped. Prices still
    move over the skipped time (the next tick's return spans it), and ``seq``
    counts generated ticks only, so it stays contiguous. Each call also
    returns at most ``max_batch`` ticks; any more that are due stay pending
    for the next call, which then counts as advanced only to the last one.

    Args:
        listings: the symbols to simulate, each at most once.
        tick_rate: long-run mean ticks per second per symbol.
        start: the time base of ``now`` when the simulation starts, in seconds.
        rng: the source of every random number.
        max_batch: the most ticks one :meth:`advance` returns.
        dynamics: market-wide parameters.

    Raises:
        ValueError: no listings, a repeated symbol, a listing inconsistent
            with ``dynamics``, or a non-positive ``tick_rate`` or ``max_batch``.
    """

    def __init__(
        self,
        listings: Sequence[Listing],
        *,
        tick_rate: float,
        start: float,
        rng: np.random.Generator,
        max_batch: int = 10_000,
        dynamics: Dynamics = DEFAULT_DYNAMICS,
    ) -> None:
        if not listings:
            raise ValueError("a market needs at least one listing")
        if len({listing.symbol for listing in listings}) != len(listings):
            raise ValueError("listings repeat a symbol")
        if not 0.0 < tick_rate < 1e7 or max_batch < 1:
            raise ValueError("tick_rate and max_batch must be positive")
        self._listings = tuple(listings)
        self._dynamics = dynamics
        self._start = start
        self._rng = rng
        self._max_batch = max_batch
        self._jump_rate = dynamics.jumps_per_day / TRADING_DAY
        self._states = [_SymbolState(x, dynamics, self._jump_rate) for x in listings]
        self._by_symbol = {state.symbol: state for state in self._states}
        for state in self._states:
            self._schedule_jump(state)
        calm = len(listings) * tick_rate * dynamics.calm_share
        self._rates = (calm, calm * dynamics.burst_factor)  # total arrivals per second
        self._keep = max_batch / (2.0 * self._rates[1])
        self._stall_after = max(_STALL_GAP, self._keep)
        self._factor_scale = dynamics.market_volatility / math.sqrt(TRADING_YEAR)
        self._factor = 0.0
        self._factor_time = 0.0  # the last processed arrival, where the factor was advanced to
        self._uniforms: list[list[float]] = []
        self._normals: list[list[float]] = []
        self._row = 0
        self._done = 0.0  # every arrival up to here has been processed (or skipped)
        self._skipped = 0.0
        p_burst = dynamics.burst_duration / (dynamics.burst_duration + dynamics.calm_duration)
        self._burst = bool(rng.random() < p_burst)  # start in the stationary distribution
        self._switch_at = self._regime_length()
        self._next = self._schedule(0.0, float(rng.exponential(1.0 / self._rates[self._burst])))

    @property
    def listings(self) -> tuple[Listing, ...]:
        """The simulated listings, in the order given."""
        return self._listings

    @property
    def start(self) -> float:
        """The time base of ``now``: where the simulation starts (and a backfill ends)."""
        return self._start

    @property
    def skipped_seconds(self) -> float:
        """Simulated seconds whose arrivals were skipped after stalls."""
        return self._skipped

    def next_arrival(self) -> float:
        """The time of the next scheduled tick, in the time base of ``start``."""
        return self._start + self._next

    def last_price(self, symbol: str) -> float:
        """The price of the symbol's last tick, or its listing price before any.

        Raises:
            KeyError: the symbol is not listed.
        """
        try:
            return self._by_symbol[symbol].cents / 100
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}") from None

    def resume(
        self,
        symbol: str,
        *,
        log_price: float,
        cents: int,
        seq: int,
        volume: int,
        since: float,
        seen_factor: float,
    ) -> None:
        """Continue a symbol from history (see :mod:`.backfill`); call before the first advance.

        Args:
            symbol: a listed symbol.
            log_price: the path's unrounded log price at its last tick.
            cents: that tick's price in cents.
            seq: that tick's seq; the next tick is ``seq + 1``.
            volume: cumulative volume after it.
            since: its time relative to ``start`` (negative: it came before).
            seen_factor: the market factor at it, relative to the factor at ``start``.
        """
        state = self._by_symbol[symbol]
        state.log_price, state.cents, state.seq, state.volume = log_price, cents, seq, volume
        state.time, state.seen_factor = since, seen_factor

    def advance(self, now: float) -> list[Tick]:
        """Generate the ticks that arrive up to ``now``, in arrival order, stamped ``ts=now``.

        See the class docstring for how a stall and ``max_batch`` limit the batch.
        """
        t_now = now - self._start
        if t_now - self._done > self._stall_after:
            self._fast_forward(t_now - self._keep)
        # Stamped on the microsecond grid: the wire carries six decimals, and the server and
        # its clients must put every tick in the same clock-aligned window.
        ticks = self._generate(t_now, round(now, 6))
        caught_up = self._next > t_now
        self._done = max(self._done, t_now if caught_up else self._factor_time)
        return ticks

    def _generate(self, t_now: float, now: float) -> list[Tick]:
        ticks: list[Tick] = []
        if self._next > t_now:
            return ticks
        n_symbols, states = len(self._states), self._states
        sqrt, exp, log = math.sqrt, math.exp, math.log
        spread_scale = self._dynamics.spread_bps * 1e-4
        rate, switch_at = self._rates[self._burst], self._switch_at
        factor, factor_time, factor_scale = self._factor, self._factor_time, self._factor_scale
        uniforms, normals, row = self._uniforms, self._normals, self._row
        t = self._next
        while t <= t_now and len(ticks) < self._max_batch:
            if row == len(uniforms):
                uniforms = self._rng.random((_BLOCK, 5)).tolist()
                normals = self._rng.standard_normal((_BLOCK, 2)).tolist()
                row = 0
            u_gap, u_symbol, u_size, u_spread, u_side = uniforms[row]
            z_factor, z_idio = normals[row]
            row += 1

            factor += factor_scale * sqrt(t - factor_time) * z_factor
            factor_time = t
            state = states[min(int(u_symbol * n_symbols), n_symbols - 1)]
            dt = t - state.time
            state.log_price += (
                state.mu * dt
                + state.beta * (factor - state.seen_factor)
                + state.idio * sqrt(dt) * z_idio
            )
            state.seen_factor, state.time = factor, t
            if state.next_jump <= t:
                self._jump(state, t)

            cents = max(1, int(exp(state.log_price) * 100.0 + 0.5))
            spread = max(1, int(cents * spread_scale * (0.5 + u_spread) + 0.5))
            bid = max(1, cents - int(u_side * (spread + 1)))
            size = 100 * min(_MAX_LOTS, int((1.0 - u_size) ** _SIZE_EXPONENT))
            state.cents = cents
            state.seq += 1
            state.volume += size
            ticks.append(
                Tick(
                    symbol=state.symbol,
                    seq=state.seq,
                    ts=now,
                    price=cents / 100,
                    bid=bid / 100,
                    ask=(bid + spread) / 100,
                    size=size,
                    volume=state.volume,
                )
            )

            gap = -log(1.0 - u_gap) / rate
            if t + gap < switch_at:
                t += gap
            else:
                t = self._schedule(t, gap)
                rate, switch_at = self._rates[self._burst], self._switch_at
        self._factor, self._factor_time = factor, factor_time
        self._uniforms, self._normals, self._row = uniforms, normals, row
        self._next = t
        return ticks

    def _schedule(self, t: float, gap: float) -> float:
        """The arrival after one at ``t`` with a drawn ``gap``, across regime switches."""
        while t + gap >= self._switch_at:
            # Exponential gaps are memoryless: at a switch, redraw at the new rate.
            t = self._switch_at
            self._burst = not self._burst
            self._switch_at = t + self._regime_length()
            gap = float(self._rng.exponential(1.0 / self._rates[self._burst]))
        return t + gap

    def _regime_length(self) -> float:
        d = self._dynamics
        return float(self._rng.exponential(d.burst_duration if self._burst else d.calm_duration))

    def _schedule_jump(self, state: _SymbolState) -> None:
        if self._jump_rate > 0:
            state.next_jump += float(self._rng.exponential(1.0 / self._jump_rate))

    def _jump(self, state: _SymbolState, t: float) -> None:
        while state.next_jump <= t:
            size, sign = self._rng.random(2)
            state.log_price += state.jump_mean * -math.log(1.0 - size) * (1 if sign < 0.5 else -1)
            self._schedule_jump(state)

    def _fast_forward(self, target: float) -> None:
        """Skip the arrivals before ``target``; the factor and regime still evolve."""
        if self._next >= target:
            return
        while self._switch_at <= target:
            self._burst = not self._burst
            self._switch_at += self._regime_length()
        z = float(self._rng.standard_normal())
        self._factor += self._factor_scale * math.sqrt(target - self._factor_time) * z
        self._factor_time = target
        self._skipped += target - self._done
        self._done = target
        gap = float(self._rng.exponential(1.0 / self._rates[self._burst]))
        self._next = self._schedule(target, gap)
