"""Tests of the simulated market: invariants, statistics, determinism and stalls."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_server.market import (
    DEFAULT_DYNAMICS,
    DEFAULT_UNIVERSE,
    TRADING_YEAR,
    Dynamics,
    Listing,
    Market,
    listings_for,
)
from ticker_server.protocol import SYMBOL_PATTERN, Tick

START = 1_700_000_000.0
GRID = 300.0  # seconds between samples of the statistics run
GRID_HOURS = 96
GRID_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMD", "KO", "XOM")

UNIVERSE = {listing.symbol for listing in DEFAULT_UNIVERSE}

TickKey = tuple[str, int, float, float, float, int, int]


def key(tick: Tick) -> TickKey:
    """Everything about a tick except when it was emitted."""
    return (tick.symbol, tick.seq, tick.price, tick.bid, tick.ask, tick.size, tick.volume)


def market(
    listings: Sequence[Listing] = DEFAULT_UNIVERSE[:5],
    *,
    tick_rate: float = 100.0,
    seed: int = 1,
    max_batch: int = 10_000,
    dynamics: Dynamics = DEFAULT_DYNAMICS,
) -> Market:
    rng = np.random.default_rng(seed)
    return Market(
        listings, tick_rate=tick_rate, start=START, rng=rng, max_batch=max_batch, dynamics=dynamics
    )


def run(m: Market, offsets: Iterable[float]) -> list[Tick]:
    """Advance ``m`` to each offset from START in turn and collect the ticks."""
    ticks: list[Tick] = []
    for offset in offsets:
        ticks += m.advance(START + offset)
    return ticks


def on_grid(value: float) -> bool:
    return abs(value * 100 - round(value * 100)) < 1e-6


def assert_invariants(ticks: Sequence[Tick]) -> None:
    """Prices, quotes, sizes, seq and volume are well formed in ``ticks`` (a run from the start)."""
    seq: dict[str, int] = {}
    volume: dict[str, int] = {}
    for tick in ticks:
        assert tick.price > 0 and on_grid(tick.price)
        assert on_grid(tick.bid) and on_grid(tick.ask)
        assert 0 < tick.bid <= tick.price <= tick.ask and tick.bid < tick.ask
        assert tick.size > 0 and tick.size % 100 == 0
        assert tick.seq == seq.get(tick.symbol, 0) + 1
        seq[tick.symbol] = tick.seq
        if tick.symbol in volume:
            assert tick.volume == volume[tick.symbol] + tick.size
        volume[tick.symbol] = tick.volume
        assert tick.merged is None and tick.high is None and tick.low is None


def log_returns(prices: np.ndarray) -> np.ndarray:
    return np.diff(np.log(prices))


@pytest.fixture(scope="module")
def grid_run() -> tuple[list[Tick], dict[str, np.ndarray]]:
    """96 simulated hours of six symbols, with each last price sampled every 5 minutes."""
    listings = listings_for(GRID_SYMBOLS)
    m = market(listings, tick_rate=0.1, seed=20240501)
    ticks: list[Tick] = []
    samples: dict[str, list[float]] = {x.symbol: [x.price] for x in listings}
    for k in range(1, int(GRID_HOURS * 3600 / GRID) + 1):
        ticks += m.advance(START + k * GRID)
        for symbol, prices in samples.items():
            prices.append(m.last_price(symbol))
    return ticks, {symbol: np.array(prices) for symbol, prices in samples.items()}


# --------------------------------------------------------------------------- statistics


def test_volatility_matches_listings(grid_run: tuple[list[Tick], dict[str, np.ndarray]]) -> None:
    """Annualised volatility of 5-minute log returns matches each listing's volatility."""
    _, samples = grid_run
    ratios = []
    for listing in listings_for(GRID_SYMBOLS):
        returns = log_returns(samples[listing.symbol])
        vol = math.sqrt(np.var(returns, ddof=1) * TRADING_YEAR / GRID)
        assert vol == pytest.approx(listing.volatility, rel=0.15), listing.symbol
        ratios.append(vol / listing.volatility)
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.05)


def test_returns_correlate_through_the_market_factor(
    grid_run: tuple[list[Tick], dict[str, np.ndarray]],
) -> None:
    """Returns correlate as beta_i * beta_j * market_vol^2 / (vol_i * vol_j) predicts."""
    _, samples = grid_run
    market_vol = DEFAULT_DYNAMICS.market_volatility
    errors = []
    for a, b in itertools.combinations(listings_for(GRID_SYMBOLS), 2):
        expected = a.beta * b.beta * market_vol**2 / (a.volatility * b.volatility)
        rho = np.corrcoef(log_returns(samples[a.symbol]), log_returns(samples[b.symbol]))[0, 1]
        assert rho > 0.15 and rho == pytest.approx(expected, abs=0.15), (a.symbol, b.symbol)
        errors.append(rho - expected)
    assert np.mean(errors) == pytest.approx(0.0, abs=0.06)


def test_drift_matches_configuration() -> None:
    """The mean log return is (drift - vol^2/2) per year (a huge drift makes it measurable)."""
    listings = [Listing(f"S{i}", f"S{i} Corp.", 100.0, 0.2, 0.0) for i in range(20)]
    m = market(listings, tick_rate=0.01, seed=5, dynamics=Dynamics(drift=40.0))
    horizon = 20 * 3600.0
    run(m, np.arange(1, 21) * 3600.0)
    growth = np.mean([math.log(m.last_price(x.symbol) / 100.0) for x in listings])
    drift = growth / (horizon / TRADING_YEAR) + 0.2**2 / 2
    assert drift == pytest.approx(40.0, abs=2.0)


def test_jumps_fatten_the_tails() -> None:
    """Jumps give 1-minute returns heavy tails; without them the returns are near normal."""

    def excess_kurtosis(dynamics: Dynamics) -> float:
        listing = Listing("X", "X Corp.", 100.0, 0.3, 1.0)
        m = market([listing], tick_rate=0.1, seed=11, dynamics=dynamics)
        prices = [listing.price]
        for k in range(1, 1801):
            m.advance(START + k * 60.0)
            prices.append(m.last_price("X"))
        returns = log_returns(np.array(prices))
        centred = returns - returns.mean()
        return float(np.mean(centred**4) / np.mean(centred**2) ** 2 - 3.0)

    assert excess_kurtosis(Dynamics(jumps_per_day=10.0)) > 3.0
    assert abs(excess_kurtosis(Dynamics(jumps_per_day=0.0))) < 1.0


def test_arrival_rate_is_tick_rate_with_bursts() -> None:
    """Ticks arrive at tick_rate per symbol on average, and bursts make counts overdispersed."""
    m = market(DEFAULT_UNIVERSE[:4], tick_rate=2.0, seed=3)
    per_second = [m.advance(START + k) for k in range(1, 7201)]
    counts = np.array([len(batch) for batch in per_second])
    for listing in DEFAULT_UNIVERSE[:4]:
        n = sum(tick.symbol == listing.symbol for batch in per_second for tick in batch)
        assert n / 7200 == pytest.approx(2.0, rel=0.10), listing.symbol
    assert counts.mean() == pytest.approx(8.0, rel=0.07)
    assert counts.var() / counts.mean() > 2.0  # a Poisson process without bursts gives 1


# --------------------------------------------------------------------------- invariants


def test_ticks_are_well_formed(grid_run: tuple[list[Tick], dict[str, np.ndarray]]) -> None:
    """Every tick of a long run is on the cent grid, with bid < ask, round lots, running volume."""
    ticks, _ = grid_run
    assert len(ticks) > 150_000
    assert_invariants(ticks)
    sizes = np.array([tick.size for tick in ticks])
    assert 0.85 < np.mean(sizes <= 500) < 0.97 and np.mean(sizes >= 1000) > 0.01
    spreads = np.array([(tick.ask - tick.bid) / tick.price for tick in ticks])
    assert 0.5e-4 < np.median(spreads) < 4e-4


def test_ticks_validate_as_protocol_ticks() -> None:
    """Generated ticks survive Tick.model_validate and a JSON round trip unchanged."""
    ticks = run(market(), [0.5])
    assert ticks
    for tick in ticks[:50]:
        assert Tick.model_validate(tick.model_dump()) == tick
        assert Tick.model_validate_json(tick.model_dump_json()) == tick
        assert tick.ts == START + 0.5


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n_symbols=st.integers(1, 4),
    tick_rate=st.floats(0.5, 300.0),
    max_batch=st.integers(20, 2000),
    steps=st.lists(st.floats(0.0, 1.5), min_size=1, max_size=15),
)
def test_invariants_hold_for_any_cadence(
    seed: int, n_symbols: int, tick_rate: float, max_batch: int, steps: list[float]
) -> None:
    """For any seed, rate, batch limit and cadence, ticks are well formed and in arrival order."""
    m = market(DEFAULT_UNIVERSE[:n_symbols], tick_rate=tick_rate, seed=seed, max_batch=max_batch)
    ticks: list[Tick] = []
    now, arrival = START, m.next_arrival()
    for step in steps:
        now += step
        batch = m.advance(now)
        assert len(batch) <= max_batch and all(tick.ts == round(now, 6) for tick in batch)
        assert m.next_arrival() >= arrival
        assert len(batch) == max_batch or m.next_arrival() > now
        arrival = m.next_arrival()
        ticks += batch
    assert_invariants(ticks)


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_ticks_at_any_cadence() -> None:
    """The ticks depend on the seed only, not on how often advance() is called."""
    rng = np.random.default_rng(99)
    irregular = np.minimum(np.cumsum(rng.exponential(0.03, 200)), 2.0).tolist()
    cadences = [(np.arange(1, 2001) * 0.001).tolist(), [k / 10 for k in range(1, 21)], irregular]
    runs = [[key(t) for t in run(market(tick_rate=400.0, seed=42), c)] for c in cadences]
    assert len(runs[0]) > 3000
    assert runs[0] == runs[1] == runs[2]
    other = [key(t) for t in run(market(tick_rate=400.0, seed=43), [2.0])]
    assert other != runs[0]


def test_slow_cadence_at_low_rate_is_not_a_stall() -> None:
    """Calling advance() every 30 s at a low rate skips nothing and matches a fine cadence."""
    slow = market(tick_rate=0.5, seed=8)
    fine = market(tick_rate=0.5, seed=8)
    slow_keys = [key(t) for t in run(slow, np.arange(1, 21) * 30.0)]
    assert slow_keys == [key(t) for t in run(fine, np.arange(1, 6001) * 0.1)]
    assert slow.skipped_seconds == 0.0


# --------------------------------------------------------------------------- stalls


def test_stall_fast_forwards_with_bounded_batch() -> None:
    """After an hour-long stall one batch holds at most max_batch ticks and seq stays contiguous."""
    m = market(DEFAULT_UNIVERSE, tick_rate=200.0, seed=4, max_batch=1000)
    before = m.advance(START + 0.5)
    stalled = m.advance(START + 3600.0)
    after = m.advance(START + 3600.1)
    assert 0 < len(stalled) <= 1000
    assert m.skipped_seconds > 3599.0
    assert 100 < len(after) < 1000  # back to the ordinary rate
    assert_invariants(before + stalled + after)
    moved = [m.last_price(x.symbol) != x.price for x in DEFAULT_UNIVERSE]
    assert sum(moved) > 15  # prices moved over the skipped hour


def test_max_batch_defers_ticks_without_losing_any() -> None:
    """A batch over max_batch leaves the rest pending: draining it gives the uncapped ticks."""
    capped = market(tick_rate=20.0, seed=6, max_batch=5)
    batches = [capped.advance(START + 0.5) for _ in range(40)]
    assert all(len(batch) <= 5 for batch in batches)
    drained = [key(t) for batch in batches for t in batch]
    assert drained == [key(t) for t in run(market(tick_rate=20.0, seed=6), [0.5])]
    assert capped.next_arrival() > START + 0.5


# --------------------------------------------------------------------------- construction


def test_market_rejects_bad_arguments() -> None:
    """Empty or repeated listings, bad rates and a beta too large for the volatility raise."""
    with pytest.raises(ValueError, match="at least one listing"):
        market([])
    with pytest.raises(ValueError, match="repeat"):
        market([DEFAULT_UNIVERSE[0], DEFAULT_UNIVERSE[0]])
    with pytest.raises(ValueError, match="tick_rate"):
        market(tick_rate=0.0)
    with pytest.raises(ValueError, match=r"HIBETA: beta 3\.0"):
        market([Listing("HIBETA", "High Beta Corp.", 10.0, 0.2, 3.0)])


def test_listing_and_dynamics_validate_fields() -> None:
    """A listing off the cent grid or with a bad symbol, or jumps carrying most variance, raise."""
    with pytest.raises(ValueError, match="cent"):
        Listing("X", "X Corp.", 10.001, 0.2, 1.0)
    with pytest.raises(ValueError, match="invalid symbol"):
        Listing("x y", "X Corp.", 10.0, 0.2, 1.0)
    with pytest.raises(ValueError, match="jumps"):
        Dynamics(jumps_per_day=100.0, jump_size=5.0)


def test_last_price_starts_at_listing_price() -> None:
    """Before any tick last_price is the listing price; unknown symbols raise KeyError."""
    m = market()
    assert m.last_price("AAPL") == DEFAULT_UNIVERSE[0].price
    assert m.listings == DEFAULT_UNIVERSE[:5]
    with pytest.raises(KeyError, match="ZZZZ"):
        m.last_price("ZZZZ")


def test_listings_for_default_universe() -> None:
    """None gives the default universe of about 20 real, consistent listings."""
    listings = listings_for(None)
    assert listings == list(DEFAULT_UNIVERSE) and 15 <= len(listings) <= 25
    assert len({x.symbol for x in listings}) == len(listings)
    assert {"AAPL", "MSFT", "NVDA", "JPM", "KO"} <= {x.symbol for x in listings}
    market(listings)  # every listing is consistent with the default dynamics


def test_listings_for_known_and_unknown_symbols() -> None:
    """Known symbols keep their listing; unknown ones get a stable generated listing."""
    aapl, zzzt = listings_for([" aapl", "zzzt "])
    assert aapl == DEFAULT_UNIVERSE[0]
    assert zzzt.symbol == "ZZZT" and zzzt.name == "ZZZT Corp."
    assert zzzt == Listing("ZZZT", "ZZZT Corp.", 318.44, 0.59, 1.25)  # pinned: stable across runs
    assert listings_for(["ZZZT"], seed=1)[0] != zzzt


@pytest.mark.parametrize(
    ("symbols", "message"),
    [
        (["AAPL", "bad symbol"], "invalid symbol 'bad symbol'"),
        ([""], "invalid symbol ''"),
        (["TOOLONGSYMBOL1"], "invalid symbol 'TOOLONGSYMBOL1'"),
        (["AAPL", "MSFT", "aapl"], "duplicate symbol 'aapl'"),
        ([], "non-empty"),
        ("AAPL", "non-empty"),
    ],
)
def test_listings_for_rejects_bad_entries(symbols: list[str], message: str) -> None:
    """Invalid or repeated symbols raise ValueError naming the entry."""
    with pytest.raises(ValueError, match=message):
        listings_for(symbols)


@settings(max_examples=50, deadline=None)
@given(
    symbol=st.from_regex(SYMBOL_PATTERN, fullmatch=True).filter(lambda s: s not in UNIVERSE),
    seed=st.none() | st.integers(),
)
def test_generated_listings_are_plausible(symbol: str, seed: int | None) -> None:
    """Any valid symbol gets a plausible listing that a Market accepts."""
    (listing,) = listings_for([symbol], seed=seed)
    assert listing.symbol == symbol
    assert 10.0 <= listing.price <= 500.0 and on_grid(listing.price)
    assert 0.2 <= listing.volatility <= 0.6 and 0.5 <= listing.beta <= 1.5
    market([listing], tick_rate=1.0)
