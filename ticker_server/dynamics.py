"""The market-wide parameters of the simulation and its time units (the model: :mod:`.market`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_DYNAMICS", "TRADING_DAY", "TRADING_YEAR", "Dynamics"]

TRADING_DAY = 6.5 * 3600.0
"""Seconds in one trading day; the simulated market trades around the clock."""
TRADING_YEAR = 252 * TRADING_DAY
"""Seconds in one trading year, the unit of ``drift`` and every volatility."""


@dataclass(frozen=True, slots=True)
class Dynamics:
    """Market-wide parameters of the simulation (see :mod:`.market` for the model).

    Raises:
        ValueError: a parameter is out of range.
    """

    drift: float = 0.05
    market_volatility: float = 0.16
    jumps_per_day: float = 2.0
    jump_size: float = 3.0
    spread_bps: float = 2.0
    burst_factor: float = 5.0
    burst_duration: float = 3.0
    calm_duration: float = 60.0

    def __post_init__(self) -> None:
        if not abs(self.drift) < 1e3 or not 0.0 <= self.market_volatility < 10.0:
            raise ValueError("drift and market_volatility must be finite and in range")
        if self.jumps_per_day < 0 or self.jump_size < 0 or not self.jump_share <= 0.5:
            raise ValueError(f"jumps may carry at most half the variance, not {self.jump_share}")
        if not 0.0 < self.spread_bps < 1e4:
            raise ValueError(f"spread_bps must be positive, not {self.spread_bps}")
        if not (self.burst_factor >= 1 and self.burst_duration > 0 and self.calm_duration > 0):
            raise ValueError("burst_factor must be >= 1 and the durations positive")

    @property
    def jump_share(self) -> float:
        """The fraction of each symbol's variance that comes from jumps."""
        # A Laplace jump with mean size m has E[J^2] = 2 m^2, m = jump_size * vol * sqrt(60 s).
        return self.jumps_per_day * 2.0 * self.jump_size**2 * 60.0 / TRADING_DAY

    @property
    def calm_share(self) -> float:
        """The calm tick rate as a fraction of the long-run mean."""
        burst = self.burst_duration / (self.burst_duration + self.calm_duration)
        return 1.0 / (1.0 + (self.burst_factor - 1.0) * burst)


DEFAULT_DYNAMICS = Dynamics()
