"""Named layouts of the dashboard, kept in QSettings; the last one used opens on start.

A :class:`Workspace` is plain data (symbols, view, chart settings, indicators,
window geometry and splitter state); :class:`Workspaces` reads and writes them
under ``workspaces/<name>/`` and remembers which was last used. Taking a
workspace from the window and applying it is the window's business
(:mod:`.desk`), so this module knows nothing of widgets.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

__all__ = ["Workspace", "Workspaces", "as_bytes"]

_PREFIX = "workspaces"


@dataclass
class Workspace:
    """What a named layout restores."""

    symbols: list[str] = field(default_factory=list)
    view: str = "single"
    """"single" (the selected symbol's chart) or "grid"."""
    selected: str | None = None
    mode: str = "line"
    interval: float = 1.0
    indicators: dict[str, list[str]] = field(default_factory=dict)
    """Indicator keys per chart: "chart" (the large one) and "grid"."""
    compare: list[str] = field(default_factory=list)
    log_scale: bool = False
    geometry: bytes = b""
    splitter: bytes = b""
    window_state: bytes = b""
    """Docks and toolbars (QMainWindow.saveState)."""

    def to_json(self) -> str:
        data = asdict(self)
        for name in ("geometry", "splitter", "window_state"):
            data[name] = bytes(getattr(self, name)).hex()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Workspace:
        """Parse a saved workspace; unknown keys are ignored and bad values fall back."""
        data: dict[str, Any] = json.loads(text)
        ws = cls()
        ws.symbols = [str(s) for s in data.get("symbols", []) if isinstance(s, str)]
        ws.view = "grid" if data.get("view") == "grid" else "single"
        selected = data.get("selected")
        ws.selected = selected if isinstance(selected, str) else None
        ws.mode = "candles" if data.get("mode") == "candles" else "line"
        try:
            ws.interval = float(data.get("interval", 1.0))
        except (TypeError, ValueError):
            ws.interval = 1.0
        indicators = data.get("indicators", {})
        if isinstance(indicators, dict):
            ws.indicators = {
                str(k): [str(x) for x in v] for k, v in indicators.items() if isinstance(v, list)
            }
        ws.compare = [str(s) for s in data.get("compare", []) if isinstance(s, str)]
        ws.log_scale = bool(data.get("log_scale", False))
        for name in ("geometry", "splitter", "window_state"):
            try:
                setattr(ws, name, bytes.fromhex(str(data.get(name, ""))))
            except ValueError:
                setattr(ws, name, b"")
        return ws


class Workspaces:
    """Named workspaces in QSettings."""

    def __init__(self, settings: QSettings) -> None:
        self.settings = settings

    def names(self) -> list[str]:
        self.settings.beginGroup(_PREFIX)
        try:
            return sorted(self.settings.childKeys())
        finally:
            self.settings.endGroup()

    def save(self, name: str, workspace: Workspace) -> None:
        name = name.strip()
        if not name or "/" in name or "\\" in name:
            raise ValueError("a workspace name may not be empty or contain slashes")
        self.settings.setValue(f"{_PREFIX}/{name}", workspace.to_json())
        self.settings.setValue("workspace/last", name)
        self.settings.sync()

    def load(self, name: str) -> Workspace | None:
        raw = self.settings.value(f"{_PREFIX}/{name}")
        if raw is None:
            return None
        try:
            return Workspace.from_json(str(raw))
        except (ValueError, TypeError):
            return None

    def delete(self, name: str) -> None:
        self.settings.remove(f"{_PREFIX}/{name}")
        if self.last() == name:
            self.settings.remove("workspace/last")
        self.settings.sync()

    def last(self) -> str | None:
        """The workspace used last (saved or loaded), if it still exists."""
        name = self.settings.value("workspace/last")
        return str(name) if name and str(name) in self.names() else None

    def mark_used(self, name: str) -> None:
        self.settings.setValue("workspace/last", name)
        self.settings.sync()


def as_bytes(value: QByteArray | bytes) -> bytes:
    """Qt's byte arrays as plain bytes (for a workspace)."""
    return bytes(value.data()) if isinstance(value, QByteArray) else bytes(value)
