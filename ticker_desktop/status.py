"""The status bar: connection state in colour, server URL, RTT, latency, ticks/s, conflation,
and how much of what the server sent was rejected as unbelievable."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from .client import ConnectionState, InputRejected, StateChanged
from .theme import WARN, state_color

__all__ = ["ConnectionStatus"]


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f} ms"


class ConnectionStatus(QStatusBar):
    """Shows what the feed is doing; :meth:`tick` keeps the reconnect countdown current."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state_label = QLabel()
        self.url_label = QLabel()
        self.rtt_label = QLabel()
        self.latency_label = QLabel()
        self.rate_label = QLabel()
        self.conflated_label = QLabel()
        self.rejected_label = QLabel()
        self.addWidget(self.state_label)
        self.addWidget(self.url_label, 1)
        self.addPermanentWidget(self.rejected_label)
        for label in (self.rtt_label, self.latency_label, self.rate_label, self.conflated_label):
            label.setStyleSheet("QLabel { padding: 0 10px; border-left: 1px solid #262c35; }")
            self.addPermanentWidget(label)
        self.rejected_label.setStyleSheet(
            f"QLabel {{ color: {WARN.name()}; padding: 0 10px; border-left: 1px solid #262c35; }}"
        )
        self.rejected_label.hide()  # until the server sends something unbelievable
        self.rtt_label.setToolTip("Round trip of a ping to the server")
        self.latency_label.setToolTip("Tick timestamp to chart painted (median of recent frames)")
        self.rate_label.setToolTip("Live ticks received per second, all symbols")
        self.conflated_label.setToolTip(
            "Ticks the server merged to respect our max_rate (sum of merged - 1)"
        )
        self.state = ConnectionState.IDLE
        self.detail = ""
        self._retry_at: float | None = None
        self._color = ""
        self.show_state(StateChanged(ConnectionState.IDLE, ""))
        self.show_figures(None, None, 0.0, 0)

    @property
    def state_text(self) -> str:
        return self.state_label.text()

    def show_state(self, event: StateChanged) -> None:
        """Remember the new state and redraw it."""
        self.state = event.state
        self.detail = event.detail
        self.url_label.setText(event.url)
        self._retry_at = None if event.retry_in is None else time.monotonic() + event.retry_in
        self.tick()

    def tick(self) -> None:
        """Redraw the state label (the reconnect countdown moves)."""
        state = self.state
        left = max(0.0, (self._retry_at or 0.0) - time.monotonic())
        text = {
            ConnectionState.IDLE: "idle",
            ConnectionState.CONNECTING: "connecting…",
            ConnectionState.LIVE: "● live",
            ConnectionState.RECONNECTING: f"reconnecting in {left:.1f} s",
            ConnectionState.ERROR: f"error: {self.detail[:60]} — retrying in {left:.1f} s",
            ConnectionState.CLOSED: "closed",
        }[state]
        self.state_label.setText(text)
        color = state_color(state.value).name()
        if color != self._color:  # restyling re-parses the sheet: only on a change
            self._color = color
            self.state_label.setStyleSheet(
                f"QLabel {{ color: {color}; font-weight: bold; padding: 0 8px; }}"
            )
        self.state_label.setToolTip(self.detail)

    def show_rejected(self, event: InputRejected) -> None:
        """Show how much the server sent that was rejected, and why, in the tooltip."""
        if event.quiet or not event.shown_total:
            return
        self.rejected_label.setText(f"⚠ rejected {event.shown_total:,}")
        lines = [f"{reason}: {count:,}" for reason, count in sorted(event.totals)]
        self.rejected_label.setToolTip(
            "Data from the server that the dashboard refused to show:\n"
            + "\n".join(lines)
            + f"\nlatest: {event.detail}"
        )
        self.rejected_label.show()

    def show_figures(
        self, rtt: float | None, latency: float | None, rate: float, conflated: int
    ) -> None:
        self.rtt_label.setText(f"RTT {_ms(rtt)}")
        self.latency_label.setText(f"tick→screen {_ms(latency)}")
        self.rate_label.setText(f"{rate:,.0f} ticks/s")
        self.conflated_label.setText(f"conflated {conflated:,}")
