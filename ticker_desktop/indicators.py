"""Technical indicators over a price series, computed incrementally (pure numpy: no Qt, no I/O).

An :class:`Indicator` keeps its output rows aligned with the rows of the series it
follows (ticks or candles of one width). On each :meth:`Indicator.update` it
recomputes only from the newest row it had (a candle's last row changes in place
while it is open) to the end, taking what came before from its own previous
outputs: a rolling window re-reads the last ``period`` inputs, a recursive
average (EMA, Wilder's RSI) carries its last value, VWAP carries its running
sums. A full pass runs only on the first update, after a history load or
interval change (a new series), or if the indicator fell further behind than the
series holds.

The recursive averages are vectorised in blocks (see :func:`ema`): inside a
block the recurrence has a closed form that numpy evaluates for all blocks at
once, and only one carry per block is propagated in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from .buffers import Columns

__all__ = [
    "LOWER_KINDS",
    "SESSION",
    "Indicator",
    "IndicatorKind",
    "IndicatorSpec",
    "bollinger",
    "ema",
    "macd",
    "rsi",
    "sma",
    "vwap",
]

Array = npt.NDArray[np.float64]
IndicatorKind = Literal["sma", "ema", "vwap", "bollinger", "rsi", "macd"]
LOWER_KINDS: frozenset[str] = frozenset({"rsi", "macd"})
"""Kinds drawn in the lower pane (an oscillator), not over the price."""
SESSION = 86_400.0
"""VWAP restarts at each UTC day boundary (a session of the simulated market)."""


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """Which indicator, with which period (SMA, EMA; the others use their textbook settings)."""

    kind: IndicatorKind
    period: int = 0

    @property
    def label(self) -> str:
        if self.kind in ("sma", "ema"):
            return f"{self.kind.upper()} {self.period}"
        return {"vwap": "VWAP", "bollinger": "BB 20, 2", "rsi": "RSI 14", "macd": "MACD 12 26 9"}[
            self.kind
        ]

    @property
    def key(self) -> str:
        """A stable text form, for settings and workspaces (``sma:20``, ``vwap``)."""
        return f"{self.kind}:{self.period}" if self.kind in ("sma", "ema") else self.kind

    @classmethod
    def parse(cls, key: str) -> IndicatorSpec:
        """The spec of a :attr:`key`; raises ValueError for anything else."""
        kind, _, period = key.partition(":")
        if kind in ("sma", "ema"):
            n = int(period)
            if not 1 <= n <= 10_000:
                raise ValueError(f"period out of range: {key}")
            return cls(kind, n)  # type: ignore[arg-type]
        if kind in ("vwap", "bollinger", "rsi", "macd") and not period:
            return cls(kind)  # type: ignore[arg-type]
        raise ValueError(f"not an indicator: {key}")


# -- whole-series computations (also the building blocks of the incremental updates) --


def sma(x: Array, n: int) -> Array:
    """Simple moving average of the last ``n`` values; NaN until ``n`` values exist."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        # Centred on the first value so the running sum stays small and exact enough.
        c = np.concatenate(([0.0], np.cumsum(x - x[0])))
        out[n - 1 :] = (c[n:] - c[:-n]) / n + x[0]
    return out


def bollinger(x: Array, n: int = 20, k: float = 2.0) -> tuple[Array, Array, Array]:
    """Middle band (SMA ``n``), upper and lower bands at ``k`` population deviations."""
    mid = np.full(len(x), np.nan)
    dev = np.full(len(x), np.nan)
    if len(x) >= n:
        windows = np.lib.stride_tricks.sliding_window_view(x, n)
        mid[n - 1 :] = windows.mean(axis=1)
        dev[n - 1 :] = windows.std(axis=1)
    return mid, mid + k * dev, mid - k * dev


def _block(alpha: float) -> int:
    """Block length for the closed form: the scale factors stay under 1e6, so the error
    stays near 1e-10 of the largest input even when inputs cancel (the MACD line)."""
    b = 1.0 - alpha
    return max(1, min(256, int(math.log(1e6) / -math.log(b))))


def ema(x: Array, alpha: float, carry: float | None = None) -> Array:
    """The recursion ``y[i] = y[i-1] + alpha * (x[i] - y[i-1])``, vectorised in blocks.

    ``carry`` is the value before ``x[0]``; without it the series starts at ``x[0]``.
    """
    n = len(x)
    if not n:
        return np.empty(0)
    if alpha >= 1.0:
        return np.array(x, dtype=float)  # period 1: each value is its own average
    c = float(x[0]) if carry is None else carry
    if n < 8:
        # A live update's few rows: a loop costs less than the blocks' setup.
        short = np.empty(n)
        for i, v in enumerate(x.tolist()):
            c += alpha * (v - c)
            short[i] = c
        return short
    b = 1.0 - alpha
    size = _block(alpha)
    rows = -(-n // size)
    padded = np.zeros(rows * size)
    padded[:n] = x
    blocks = padded.reshape(rows, size)
    powers = b ** np.arange(size)  # b^j
    # Within a block started from 0: alpha * sum_k b^(j-k) x_k = alpha * b^j * cumsum(x_k / b^k).
    within = alpha * np.cumsum(blocks / powers, axis=1) * powers
    carries = np.empty(rows)
    step = b**size
    ends = within[:, -1].tolist()
    for i in range(rows):
        carries[i] = c
        c = step * c + ends[i]
    out: Array = (within + np.outer(carries, powers * b)).ravel()[:n]
    return out


def rsi(x: Array, n: int = 14) -> tuple[Array, Array, Array]:
    """Wilder's RSI: the index, and the average gain and loss it is made of (NaN before row ``n``).

    Row ``i`` takes the move from ``x[i-1]`` to ``x[i]``; row ``n`` holds the plain mean of
    the first ``n`` moves, each later row the Wilder average (an EMA with alpha ``1/n``).
    """
    gains = np.full(len(x), np.nan)
    losses = np.full(len(x), np.nan)
    if len(x) > n:
        d = np.diff(x)
        up, down = np.maximum(d, 0.0), np.maximum(-d, 0.0)
        gains[n], losses[n] = up[:n].mean(), down[:n].mean()
        gains[n + 1 :] = ema(up[n:], 1.0 / n, float(gains[n]))
        losses[n + 1 :] = ema(down[n:], 1.0 / n, float(losses[n]))
    return _rsi_index(gains, losses), gains, losses


def _rsi_index(gains: Array, losses: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 - 100.0 / (1.0 + gains / losses)
    out = np.where((losses == 0) & (gains > 0), 100.0, out)
    out = np.where((losses == 0) & (gains == 0), 50.0, out)
    return np.where(np.isnan(gains), np.nan, out)


def macd(
    x: Array, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[Array, Array, Array, Array, Array]:
    """MACD line, signal line, histogram, and the fast and slow EMAs they come from."""
    f = ema(x, 2.0 / (fast + 1))
    s = ema(x, 2.0 / (slow + 1))
    line = f - s
    sig = ema(line, 2.0 / (signal + 1))
    return line, sig, line - sig, f, s


def vwap(x: Array, volume: Array, t: Array, session: float = SESSION) -> tuple[Array, Array, Array]:
    """Volume-weighted average price since the session began, and its running sums.

    Rows with no volume so far in the session show the price itself.
    """
    n = len(x)
    pv = x * volume
    sessions = np.floor(t / session)
    new = np.ones(n, dtype=bool)
    new[1:] = sessions[1:] != sessions[:-1]
    # Each row's session start, and the running sums just before it.
    first = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    cpv = np.cumsum(pv)
    cv = np.cumsum(volume)
    before = first - 1
    base_pv = np.where(before >= 0, cpv[before], 0.0)
    base_v = np.where(before >= 0, cv[before], 0.0)
    spv, sv = cpv - base_pv, cv - base_v
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(sv > 0, spv / sv, x)
    return out, spv, sv


# -- incremental -------------------------------------------------------------------------

_COLUMNS: dict[str, tuple[str, ...]] = {
    "sma": ("sma",),
    "ema": ("ema",),
    "vwap": ("vwap", "pv", "v"),
    "bollinger": ("mid", "upper", "lower"),
    "rsi": ("rsi", "gain", "loss"),
    "macd": ("macd", "signal", "hist", "fast", "slow"),
}
_LINES: dict[str, tuple[str, ...]] = {
    "sma": ("sma",),
    "ema": ("ema",),
    "vwap": ("vwap",),
    "bollinger": ("mid", "upper", "lower"),
    "rsi": ("rsi",),
    "macd": ("macd", "signal", "hist"),
}
RSI_PERIOD, BB_PERIOD, BB_WIDTH = 14, 20, 2.0
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9


class Indicator:
    """One indicator following one series, its outputs aligned row for row with the series.

    Args:
        spec: which indicator.
        capacity: the series' capacity, so both drop their oldest rows in step.
    """

    def __init__(self, spec: IndicatorSpec, capacity: int) -> None:
        self.spec = spec
        self.lines = _LINES[spec.kind]
        """The output columns that are drawn."""
        self.capacity = capacity
        self.full_passes = 0
        """Whole-series computations so far (the first, then only after a reset)."""
        self.rows_computed = 0
        """Rows computed so far, full passes included (tests read it to see the work stay small)."""
        self._out = Columns(capacity, dict.fromkeys(_COLUMNS[spec.kind], np.float64))
        self._base = 0
        """The series' absolute row index of our row 0 when the last full pass ran."""

    def reset(self) -> None:
        """Forget all outputs: the next update is a full pass (a history load, a new series)."""
        self._out = Columns(self.capacity, dict.fromkeys(_COLUMNS[self.spec.kind], np.float64))
        self._base = 0

    def column(self, name: str) -> Array:
        """A zero-copy view of one output, aligned with the series' rows."""
        return self._out.column(name)

    def __len__(self) -> int:
        return len(self._out)

    def update(self, x: Array, volume: Array, t: Array, evicted: int) -> None:
        """Bring the outputs up to date with the series' rows.

        Args:
            x: prices (tick prices, or candle closes), oldest first.
            volume: the volume of each row (tick sizes, or candle volumes).
            t: each row's time (epoch seconds), for VWAP's sessions.
            evicted: the series' absolute index of ``x[0]`` (rows it has dropped).
        """
        n = len(x)
        if not n:
            return
        out = self._out
        ours = self._base + out.evicted
        held_end = ours + len(out)
        # Redo our newest row (an open candle changes in place), then everything after it.
        redo = held_end - 1
        if not len(out) or redo < evicted or held_end > evicted + n or (redo == ours != evicted):
            self._full(x, volume, t, evicted)
            return
        r = redo - evicted
        mine = redo - ours
        # With one row held there is no earlier state to carry: the series is that short.
        values = self._whole(x, volume, t) if mine == 0 else self._compute(x, volume, t, r, mine)
        for name, array in values.items():
            out.raw(name)[out.last_index()] = array[0]
        more = n - r - 1
        if more > 0:
            if more > self.capacity:
                self._full(x, volume, t, evicted)
                return
            j = out.next_rows(more)
            for name, array in values.items():
                out.raw(name)[j : j + more] = array[1:]
        self.rows_computed += n - r

    def _full(self, x: Array, volume: Array, t: Array, evicted: int) -> None:
        self.reset()
        values = self._whole(x, volume, t)
        n = len(x)
        j = self._out.next_rows(n)
        for name, array in values.items():
            self._out.raw(name)[j : j + n] = array
        self._base = evicted
        self.full_passes += 1
        self.rows_computed += n

    def _whole(self, x: Array, volume: Array, t: Array) -> dict[str, Array]:
        kind, p = self.spec.kind, self.spec.period
        if kind == "sma":
            return {"sma": sma(x, p)}
        if kind == "ema":
            return {"ema": ema(x, 2.0 / (p + 1))}
        if kind == "bollinger":
            mid, upper, lower = bollinger(x, BB_PERIOD, BB_WIDTH)
            return {"mid": mid, "upper": upper, "lower": lower}
        if kind == "rsi":
            index, gain, loss = rsi(x, RSI_PERIOD)
            return {"rsi": index, "gain": gain, "loss": loss}
        if kind == "macd":
            line, sig, hist, fast, slow = macd(x, MACD_FAST, MACD_SLOW, MACD_SIGNAL)
            return {"macd": line, "signal": sig, "hist": hist, "fast": fast, "slow": slow}
        price, pv, v = vwap(x, volume.astype(np.float64), t)
        return {"vwap": price, "pv": pv, "v": v}

    def _compute(self, x: Array, volume: Array, t: Array, r: int, mine: int) -> dict[str, Array]:
        """Outputs for rows ``r`` to the end of the series; ``mine`` is row ``r``'s index in ours
        (``mine - 1``, the row before, holds the carried state)."""
        kind, p = self.spec.kind, self.spec.period

        def prev(name: str) -> float:
            return float(self._out.column(name)[mine - 1])

        if kind in ("sma", "bollinger"):
            width = p if kind == "sma" else BB_PERIOD
            if r >= width - 1 and len(x) - r <= _FEW:
                return _windows(kind, x, r, width)
            lo = max(0, r - width + 1)
            whole = self._whole(x[lo:], volume[lo:], t[lo:])
            return {name: array[r - lo :] for name, array in whole.items()}
        if kind == "ema":
            return {"ema": ema(x[r:], 2.0 / (p + 1), prev("ema"))}
        if kind == "macd":
            fast = ema(x[r:], 2.0 / (MACD_FAST + 1), prev("fast"))
            slow = ema(x[r:], 2.0 / (MACD_SLOW + 1), prev("slow"))
            line = fast - slow
            sig = ema(line, 2.0 / (MACD_SIGNAL + 1), prev("signal"))
            return {"macd": line, "signal": sig, "hist": line - sig, "fast": fast, "slow": slow}
        if kind == "rsi":
            if r <= RSI_PERIOD:
                whole = self._whole(x, volume, t)
                return {name: array[r:] for name, array in whole.items()}
            d = np.diff(x[r - 1 :])
            gain = ema(np.maximum(d, 0.0), 1.0 / RSI_PERIOD, prev("gain"))
            loss = ema(np.maximum(-d, 0.0), 1.0 / RSI_PERIOD, prev("loss"))
            return {"rsi": _rsi_index(gain, loss), "gain": gain, "loss": loss}
        if len(x) - r <= _FEW:
            return _vwap_rows(x[r:], volume[r:], t[r:], float(t[r - 1]), prev("pv"), prev("v"))
        price, pv, v = vwap(x[r:], volume[r:].astype(np.float64), t[r:])
        same = np.floor(t[r:] / SESSION) == math.floor(float(t[r - 1]) / SESSION)
        # The rows still in the previous row's session continue its sums.
        pv = pv + np.where(same, prev("pv"), 0.0)
        v = v + np.where(same, prev("v"), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            price = np.where(v > 0, pv / v, x[r:])
        return {"vwap": price, "pv": pv, "v": v}


_FEW = 16
"""Rows up to which an update takes the short paths below (numpy's per-call cost dominates)."""


def _windows(kind: str, x: Array, r: int, width: int) -> dict[str, Array]:
    """SMA (or Bollinger bands) of rows ``r >= width - 1`` on, from one gather of their windows."""
    windows = x[np.arange(r - width + 1, len(x) - width + 1)[:, None] + np.arange(width)]
    mid = windows.sum(axis=1) / width
    if kind == "sma":
        return {"sma": mid}
    dev = np.sqrt(np.square(windows - mid[:, None]).sum(axis=1) / width)
    return {"mid": mid, "upper": mid + BB_WIDTH * dev, "lower": mid - BB_WIDTH * dev}


def _vwap_rows(
    x: Array, volume: Array, t: Array, t_prev: float, pv: float, v: float
) -> dict[str, Array]:
    """VWAP of a few rows, carrying the running sums ``pv`` and ``v`` of the row at ``t_prev``."""
    session = math.floor(t_prev / SESSION)
    n = len(x)
    price, pvs, vs = np.empty(n), np.empty(n), np.empty(n)
    for i, (xi, vi, ti) in enumerate(zip(x.tolist(), volume.tolist(), t.tolist(), strict=True)):
        s = math.floor(ti / SESSION)
        if s != session:
            session, pv, v = s, 0.0, 0.0
        pv += xi * vi
        v += vi
        price[i], pvs[i], vs[i] = (pv / v if v > 0 else xi), pv, v
    return {"vwap": price, "pv": pvs, "v": vs}
