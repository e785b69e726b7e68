"""Price alerts: when a symbol's price crosses a level, fire once (pure: no Qt, no I/O, no clock).

An alert "above" a level fires at the first trade at or above it after the price
has been below it; "below" is the mirror image. The price when the alert is
made decides whether it starts *armed* (on the far side of the level), so an
alert placed above the market fires on the first trade that reaches it.

Updates are checked with their high and low, not only their last price: a
conflated update stands for several trades, and a level touched by one of them
and left again within the window still fires, on that update. For an armed
alert this is exact: the first update whose high (low) reaches the level is the
one that holds the first trade that crossed. An update that both arms and
reaches the level fires only when its last price is on the level's side (then
the order is certain); otherwise it arms, and the next update decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["CLOCK_SLACK", "Alert", "AlertBook", "AlertCondition", "check", "condition_for"]

AlertCondition = Literal["above", "below"]
CLOCK_SLACK = 2.0
"""Seconds the server's clock may trail ours: updates stamped that long before an alert was
made still count for it, older ones (a snapshot of earlier trading) do not."""
_Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert and where it stands."""

    id: int
    symbol: str
    condition: AlertCondition
    level: float
    created: float
    """Epoch seconds when it was made."""
    armed: bool = False
    """The price has been on the far side of the level since it was made."""
    triggered: float | None = None
    """Timestamp of the update that crossed (None while waiting)."""
    price: float | None = None
    """Last price of that update."""

    @property
    def describe(self) -> str:
        return f"{self.symbol} {'≥' if self.condition == 'above' else '≤'} {self.level:,.2f}"


def condition_for(level: float, price: float | None) -> AlertCondition:
    """The natural condition for a level: above it if it is over the price, else below."""
    return "above" if price is None or level > price else "below"


def check(alert: Alert, price: _Array, high: _Array, low: _Array, ts: _Array) -> Alert:
    """``alert`` after a run of updates (oldest first); ``triggered`` is set if one crossed."""
    if alert.triggered is not None or not len(price):
        return alert
    if ts[0] < alert.created - CLOCK_SLACK:
        # Rows from before the alert was made (a snapshot after a restart) do not count.
        recent = ts >= alert.created - CLOCK_SLACK
        price, high, low, ts = price[recent], high[recent], low[recent], ts[recent]
        if not len(price):
            return alert
    level = alert.level
    if alert.condition == "above":
        reach, away, beyond = high >= level, low < level, price >= level
    else:
        reach, away, beyond = low <= level, high > level, price <= level
    start = 0
    if not alert.armed:
        arms = np.flatnonzero(away)
        if not len(arms):
            return alert
        a = int(arms[0])
        if beyond[a] and reach[a]:
            return replace(alert, armed=True, triggered=float(ts[a]), price=float(price[a]))
        alert = replace(alert, armed=True)
        start = a + 1
    hits = np.flatnonzero(reach[start:])
    if not len(hits):
        return alert
    i = start + int(hits[0])
    return replace(alert, triggered=float(ts[i]), price=float(price[i]))


class AlertBook:
    """Every alert, by id; checks each symbol's new updates against its waiting alerts."""

    def __init__(self) -> None:
        self._alerts: dict[int, Alert] = {}
        self._next_id = 1

    def __iter__(self) -> Iterator[Alert]:
        return iter(self._alerts.values())

    def __len__(self) -> int:
        return len(self._alerts)

    def get(self, alert_id: int) -> Alert | None:
        return self._alerts.get(alert_id)

    def add(
        self,
        symbol: str,
        level: float,
        created: float,
        price: float | None,
        condition: AlertCondition | None = None,
    ) -> Alert:
        """A new alert at ``level``; ``price`` (the last known) decides whether it starts armed."""
        if not math.isfinite(level) or level <= 0:
            raise ValueError("an alert level must be a positive price")
        condition = condition or condition_for(level, price)
        armed = price is not None and (price < level if condition == "above" else price > level)
        alert = Alert(self._next_id, symbol, condition, level, created, armed)
        self._next_id += 1
        self._alerts[alert.id] = alert
        return alert

    def remove(self, alert_id: int) -> None:
        self._alerts.pop(alert_id, None)

    def waiting(self, symbol: str | None = None) -> list[Alert]:
        """Alerts not yet triggered (of ``symbol``, if given)."""
        return [
            a
            for a in self._alerts.values()
            if a.triggered is None and (symbol is None or a.symbol == symbol)
        ]

    def symbols(self) -> set[str]:
        """Symbols with an alert still waiting."""
        return {a.symbol for a in self._alerts.values() if a.triggered is None}

    def check(
        self, symbol: str, price: _Array, high: _Array, low: _Array, ts: _Array
    ) -> list[Alert]:
        """Check ``symbol``'s new updates; returns the alerts that fired on them."""
        fired = []
        for alert in self.waiting(symbol):
            after = check(alert, price, high, low, ts)
            if after is not alert:
                self._alerts[alert.id] = after
                if after.triggered is not None:
                    fired.append(after)
        return fired

    def records(self) -> list[dict[str, Any]]:
        """Plain records of every alert (for saving)."""
        return [asdict(a) for a in self._alerts.values()]

    def load(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Replace the alerts with saved ``records``; malformed ones are skipped. Returns how
        many were loaded."""
        self._alerts.clear()
        for record in records:
            try:
                alert = Alert(
                    id=int(record["id"]),
                    symbol=str(record["symbol"]),
                    condition="above" if record["condition"] == "above" else "below",
                    level=float(record["level"]),
                    created=float(record["created"]),
                    armed=bool(record.get("armed", False)),
                    triggered=_optional(record.get("triggered")),
                    price=_optional(record.get("price")),
                )
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(alert.level) and alert.level > 0:
                self._alerts[alert.id] = alert
        self._next_id = max(self._alerts, default=0) + 1
        return len(self._alerts)


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)
