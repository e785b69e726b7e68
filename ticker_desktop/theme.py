"""The dashboard's dark theme: one palette for Qt widgets and the colours the charts share."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

__all__ = [
    "ACCENT",
    "BACKGROUND",
    "DOWN",
    "GAP",
    "GRID",
    "LINE",
    "MUTED",
    "PANEL",
    "TEXT",
    "UP",
    "WARN",
    "apply_dark_theme",
    "state_color",
]

BACKGROUND = QColor("#0f1216")
PANEL = QColor("#161a20")
GRID = QColor("#262c35")
TEXT = QColor("#d7dce2")
MUTED = QColor("#7d8590")
UP = QColor("#26a69a")
DOWN = QColor("#ef5350")
LINE = QColor("#4fc3f7")
ACCENT = QColor("#f0b90b")
GAP = QColor(240, 185, 11, 40)
WARN = QColor("#ff9800")
"""Something the user should know of but that is not an error (rejected server data)."""

_STATE_COLORS = {
    "live": UP,
    "connecting": ACCENT,
    "reconnecting": WARN,
    "error": DOWN,
    "closed": MUTED,
    "idle": MUTED,
}


def state_color(state: str) -> QColor:
    """The status-bar colour of a connection state."""
    return _STATE_COLORS.get(state, MUTED)


def apply_dark_theme(app: QApplication) -> None:
    """Fusion style with a dark palette, and pyqtgraph's defaults to match."""
    app.setStyle("Fusion")
    palette = QPalette()
    roles = QPalette.ColorRole
    palette.setColor(roles.Window, PANEL)
    palette.setColor(roles.WindowText, TEXT)
    palette.setColor(roles.Base, BACKGROUND)
    palette.setColor(roles.AlternateBase, QColor("#13171c"))
    palette.setColor(roles.ToolTipBase, PANEL)
    palette.setColor(roles.ToolTipText, TEXT)
    palette.setColor(roles.Text, TEXT)
    palette.setColor(roles.Button, QColor("#1f242c"))
    palette.setColor(roles.ButtonText, TEXT)
    palette.setColor(roles.BrightText, ACCENT)
    palette.setColor(roles.Highlight, QColor("#2b4a6b"))
    palette.setColor(roles.HighlightedText, QColor("#ffffff"))
    palette.setColor(roles.PlaceholderText, MUTED)
    palette.setColor(roles.Link, LINE)
    for role in (roles.Text, roles.ButtonText, roles.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, MUTED)
    app.setPalette(palette)
    configure_pyqtgraph()


def configure_pyqtgraph() -> None:
    """Chart defaults: dark background, antialiasing off (faster, crisp 1 px lines)."""
    pg.setConfigOptions(background=BACKGROUND, foreground=MUTED, antialias=False)
