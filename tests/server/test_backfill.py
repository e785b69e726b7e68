"""The backfill: seeded, shaped like the live market, and joined to it without a seam."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ticker_server.backfill import backfill_rng, generate, parse_duration
from ticker_server.market import Market, listings_for

END = 1_764_000_000.0
LISTINGS = listings_for(["AAPL", "MSFT", "TSLA"])


def test_durations_parse_with_units() -> None:
    """6.5h, 90m, 45s, 0 and 1d read as seconds; anything else is refused."""
    assert [parse_duration(x) for x in ("6.5h", "90m", "45s", "0", "1d", "2.5")] == [
        23_400.0,
        5_400.0,
        45.0,
        0.0,
        86_400.0,
        2.5,
    ]
    for bad in ("-1h", "h", "5x", "1.2.3m", ""):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_same_seed_same_history_and_another_seed_another() -> None:
    """Two backfills from one seed are identical; a different seed changes the prices."""
    one = generate(LISTINGS, tick_rate=5, duration=900, end=END, rng=backfill_rng(4))
    two = generate(LISTINGS, tick_rate=5, duration=900, end=END, rng=backfill_rng(4))
    other = generate(LISTINGS, tick_rate=5, duration=900, end=END, rng=backfill_rng(5))
    for symbol in ("AAPL", "MSFT", "TSLA"):
        a, b = one.symbols[symbol], two.symbols[symbol]
        assert np.array_equal(a.t_us, b.t_us) and np.array_equal(a.cents, b.cents)
        assert np.array_equal(a.volume, b.volume)
        assert not np.array_equal(a.cents[:50], other.symbols[symbol].cents[:50])


def test_history_has_the_live_feeds_shape() -> None:
    """An hour at 5 ticks/s: ~18,000 ticks a symbol, inside the window, in order, on lots."""
    backfill = generate(LISTINGS, tick_rate=5, duration=3600, end=END, rng=backfill_rng(1))
    for listing in LISTINGS:
        h = backfill.symbols[listing.symbol]
        assert abs(h.count - 18_000) < 6 * math.sqrt(18_000) + 18_000 * 0.1
        assert h.t_us[0] >= (END - 3600) * 1e6 and h.t_us[-1] < END * 1e6
        assert np.all(np.diff(h.t_us) >= 0)
        assert np.all(h.sizes % 100 == 0) and np.all((h.sizes >= 100) & (h.sizes <= 25_000))
        assert np.array_equal(h.volume, np.cumsum(h.sizes))
        # Hourly log-return of a 15-60 % vol stock: well within 20 %.
        assert abs(math.log(h.cents[-1] / 100 / listing.price)) < 0.2


def test_live_market_continues_the_history_without_a_seam() -> None:
    """After the backfill the live market's first ticks carry on its seq, volume and price."""
    backfill = generate(LISTINGS, tick_rate=5, duration=1800, end=END, rng=backfill_rng(2))
    market = Market(LISTINGS, tick_rate=5, start=END, rng=np.random.default_rng(2))
    backfill.continue_market(market)
    tail = {t.symbol: t for t in backfill.tail(1)}
    live = market.advance(END + 5.0)
    for symbol, last in tail.items():
        first = next(t for t in live if t.symbol == symbol)
        assert first.seq == last.seq + 1
        assert first.volume == last.volume + first.size
        assert first.ts > last.ts
        # A few seconds of a 60 %-vol path (plus at most a rare jump) moves well under 3 %.
        assert abs(math.log(first.price / last.price)) < 0.03
        assert market.last_price(symbol) == next(
            t.price for t in reversed(live) if t.symbol == symbol
        )


def test_tail_is_the_newest_ticks_in_time_order() -> None:
    """tail(n) gives each symbol's last n ticks as valid ticks, seqs ending at the count."""
    backfill = generate(LISTINGS, tick_rate=5, duration=600, end=END, rng=backfill_rng(3))
    tail = backfill.tail(50)
    assert [t.ts for t in tail] == sorted(t.ts for t in tail)
    for listing in LISTINGS:
        h = backfill.symbols[listing.symbol]
        mine = [t for t in tail if t.symbol == listing.symbol]
        assert [t.seq for t in mine] == list(range(h.count - 49, h.count + 1))
        assert [round(t.price * 100) for t in mine] == h.cents[-50:].tolist()
        assert all(t.bid <= t.price <= t.ask and t.bid < t.ask for t in mine)
        type(mine[0]).model_validate(mine[0].model_dump())
