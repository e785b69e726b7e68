"""Indicators against straightforward loops, and incremental updates against whole passes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_desktop.buffers import CandleSeries
from ticker_desktop.indicators import (
    SESSION,
    Indicator,
    IndicatorSpec,
    bollinger,
    ema,
    macd,
    rsi,
    sma,
    vwap,
)

prices = st.lists(st.floats(1.0, 1000.0), min_size=0, max_size=300).map(np.array)


def ref_sma(x: list[float], n: int) -> list[float]:
    return [math.nan if i < n - 1 else sum(x[i - n + 1 : i + 1]) / n for i in range(len(x))]


def ref_ema(x: list[float], alpha: float, carry: float | None = None) -> list[float]:
    out, y = [], carry
    for v in x:
        y = v if y is None else y + alpha * (v - y)
        out.append(y)
    return out


def ref_rsi(x: list[float], n: int) -> list[float]:
    out = [math.nan] * len(x)
    gain = loss = 0.0
    for i in range(1, len(x)):
        up, down = max(x[i] - x[i - 1], 0.0), max(x[i - 1] - x[i], 0.0)
        if i < n:
            gain, loss = gain + up, loss + down
            continue
        if i == n:
            gain, loss = (gain + up) / n, (loss + down) / n
        else:
            gain, loss = (gain * (n - 1) + up) / n, (loss * (n - 1) + down) / n
        out[i] = (
            50.0 if gain == loss == 0 else 100.0 if loss == 0 else 100 - 100 / (1 + gain / loss)
        )
    return out


def ref_vwap(x: list[float], v: list[float], t: list[float]) -> list[float]:
    out, pv, vol, day = [], 0.0, 0.0, None
    for p, q, ts in zip(x, v, t, strict=True):
        if math.floor(ts / SESSION) != day:
            day, pv, vol = math.floor(ts / SESSION), 0.0, 0.0
        pv, vol = pv + p * q, vol + q
        out.append(pv / vol if vol else p)
    return out


def close(a: object, b: object) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(prices, st.integers(1, 40))
def test_sma_and_ema_match_the_loops(x: np.ndarray, n: int) -> None:
    """SMA and EMA (any period, blocks or not) equal the textbook recurrences."""
    close(sma(x, n), ref_sma(x.tolist(), n))
    close(ema(x, 2.0 / (n + 1)), ref_ema(x.tolist(), 2.0 / (n + 1)))
    close(ema(x, 0.5, 7.0), ref_ema(x.tolist(), 0.5, 7.0))


@settings(max_examples=80, deadline=None)
@given(prices)
def test_bollinger_rsi_and_macd_match_the_loops(x: np.ndarray) -> None:
    """Bollinger (20, 2) is SMA +- 2 population deviations; RSI 14 is Wilder's; MACD 12 26 9."""
    xs = x.tolist()
    mid, upper, lower = bollinger(x)
    close(mid, ref_sma(xs, 20))
    devs = [math.nan if i < 19 else float(np.std(xs[i - 19 : i + 1])) for i in range(len(xs))]
    close(upper, np.array(ref_sma(xs, 20)) + 2 * np.array(devs))
    close(lower, np.array(ref_sma(xs, 20)) - 2 * np.array(devs))
    close(rsi(x, 14)[0], ref_rsi(xs, 14))
    line, sig, hist, _, _ = macd(x)
    ref_line = np.array(ref_ema(xs, 2 / 13)) - np.array(ref_ema(xs, 2 / 27))
    close(line, ref_line)
    close(sig, ref_ema(ref_line.tolist(), 0.2))
    close(hist, ref_line - np.array(ref_ema(ref_line.tolist(), 0.2)))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(1.0, 500.0), st.integers(0, 300), st.floats(0.0, 20_000.0)),
        max_size=200,
    )
)
def test_vwap_restarts_each_session(rows: list[tuple[float, int, float]]) -> None:
    """VWAP is the session's sum of price x volume over its volume, the price while volume is 0."""
    t = np.cumsum([r[2] for r in rows]) if rows else np.array([])
    x = np.array([r[0] for r in rows])
    v = np.array([float(r[1]) for r in rows])
    close(vwap(x, v, t)[0], ref_vwap(x.tolist(), v.tolist(), t.tolist()))


SPECS = [
    IndicatorSpec("sma", 5),
    IndicatorSpec("ema", 9),
    IndicatorSpec("vwap"),
    IndicatorSpec("bollinger"),
    IndicatorSpec("rsi"),
    IndicatorSpec("macd"),
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-1.0, 1.0), st.integers(1, 500), st.sampled_from([0.2, 0.6, 3.0])),
        min_size=1,
        max_size=250,
    ),
    st.lists(st.integers(1, 40), min_size=1, max_size=30),
    st.integers(30, 400),
)
def test_incremental_updates_equal_a_whole_pass(
    moves: list[tuple[float, int, float]], chunks: list[int], capacity: int
) -> None:
    """Fed candles a few ticks at a time (the open candle changing in place, old candles evicted),
    every indicator equals a whole pass over the same candles, and does only one full pass."""
    candles = CandleSeries(1.0, capacity)
    indicators = [Indicator(spec, capacity) for spec in SPECS]
    price, ts, k = 100.0, 86_000.0, 0
    sizes = itertools.cycle(chunks)  # as many chunks as the moves need
    while k < len(moves):
        step = next(sizes)
        for move, size, dt in moves[k : k + step]:
            price, ts = max(1.0, price + move), ts + dt
            candles.add(ts, price, size)
        k += step
        cols = [candles.column(c) for c in ("close", "volume", "t")]
        for indicator in indicators:
            indicator.update(cols[0], cols[1], cols[2], candles.evicted)
    cols = [candles.column(c) for c in ("close", "volume", "t")]
    for indicator in indicators:
        whole = Indicator(indicator.spec, capacity)
        whole.update(cols[0], cols[1], cols[2], candles.evicted)
        assert len(indicator) == len(candles)
        assert indicator.full_passes == 1, indicator.spec
        # Windowed indicators recompute from the kept rows; recursive ones carry across
        # evictions, so they can only be compared while nothing was evicted.
        if candles.evicted and indicator.spec.kind not in ("sma", "bollinger"):
            continue
        for line in indicator.lines:
            close(indicator.column(line), whole.column(line))


def test_a_live_update_recomputes_only_the_newest_rows() -> None:
    """After a 10,000-row history, 100 one-tick updates compute about 2 rows each, not 10,000."""
    rng = np.random.default_rng(3)
    x = 100 + np.cumsum(rng.normal(0, 0.1, 10_100))
    v = np.full(len(x), 100.0)
    t = 1e6 + np.arange(len(x)) * 0.01
    indicators = [Indicator(spec, 20_000) for spec in SPECS]
    for ind in indicators:
        ind.update(x[:10_000], v[:10_000], t[:10_000], 0)
    for n in range(10_001, 10_101):
        for ind in indicators:
            ind.update(x[:n], v[:n], t[:n], 0)
    for ind in indicators:
        assert ind.full_passes == 1
        assert ind.rows_computed == 10_000 + 2 * 100, ind.spec


@pytest.mark.parametrize("key", ["sma:20", "ema:50", "vwap", "bollinger", "rsi", "macd"])
def test_spec_keys_round_trip(key: str) -> None:
    """A spec's key parses back to the same spec (workspaces store them as text)."""
    assert IndicatorSpec.parse(key).key == key


@pytest.mark.parametrize("key", ["sma", "sma:0", "ema:x", "rsi:3", "kdj", ""])
def test_bad_spec_keys_are_refused(key: str) -> None:
    """Malformed keys from a settings file raise ValueError instead of drawing nonsense."""
    with pytest.raises(ValueError):
        IndicatorSpec.parse(key)


def test_live_updates_of_a_few_rows_equal_a_whole_pass() -> None:
    """The short paths of a live frame (a few new rows: SMA and Bollinger windows, VWAP across
    a session boundary) give what a whole pass over the same rows gives."""
    rng = np.random.default_rng(11)
    n = 600
    x = 100 + np.cumsum(rng.normal(0, 0.5, n))
    v = rng.integers(1, 500, n).astype(np.float64)
    t = SESSION - 150.0 + np.arange(n) * 0.5  # the session changes at row 300
    indicators = [Indicator(spec, 1000) for spec in SPECS]
    end = 50
    for ind in indicators:
        ind.update(x[:end], v[:end], t[:end], 0)
    while end < n:
        end = min(n, end + int(rng.integers(1, 6)))
        for ind in indicators:
            ind.update(x[:end], v[:end], t[:end], 0)
    for ind in indicators:
        whole = Indicator(ind.spec, 1000)
        whole.update(x, v, t, 0)
        assert ind.full_passes == 1, ind.spec
        for line in ind.lines:
            close(ind.column(line), whole.column(line))
