"""Take the README's desk screenshots of the real window (run under ``xvfb-run``).

``xvfb-run -s '-screen 0 1600x1000x24' python examples/desk_screenshots.py docs/`` starts a
server in-process, opens the dashboard with candles, indicators, alerts, the tape and the
alerts panel, and saves X screenshots (ImageMagick's ``import -window root``) into the folder.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

import qasync
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from ticker_desktop.app import make_window
from ticker_desktop.theme import apply_dark_theme
from ticker_server.app import ServerConfig, TickerServer

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "TSLA", "META", "JPM", "XOM"]


def shot(path: Path) -> None:
    subprocess.run(["import", "-window", "root", str(path)], check=True)
    print("saved", path)


async def main(out: Path) -> None:
    server = TickerServer(ServerConfig(port=0, tick_rate=8.0, seed=7, history=2000))
    await server.start()
    folder = tempfile.mkdtemp()
    settings = QSettings(str(Path(folder) / "s.ini"), QSettings.Format.IniFormat)
    window = make_window(server.url, SYMBOLS, settings, remember_url=False)
    window.setGeometry(0, 0, 1600, 1000)
    window.show()
    window.start()
    try:
        await asyncio.sleep(75)  # a minute of candles: enough for SMA 20, Bollinger, RSI
        window.show_symbol("NVDA")
        window.mode_box.setCurrentIndex(window.mode_box.findData("candles"))
        window.desk.set_indicators("chart", ["sma:20", "ema:50", "vwap", "bollinger", "rsi"])
        series = window.store.get("NVDA")
        assert series is not None and series.last is not None
        price = series.last.price
        window.desk.alerts.add("NVDA", round(price * 1.0004, 2))
        window.desk.alerts.add("NVDA", round(price * 0.9996, 2))
        window.desk.alerts.add("MSFT", round(window.store.get("MSFT").last.price * 1.0004, 2))  # type: ignore[union-attr]
        window.splitter.setSizes([500, 1100])
        await asyncio.sleep(8)
        shot(out / "desk_chart.png")
        window.grid_action.setChecked(True)
        window.desk.set_indicators("grid", ["sma:20", "bollinger"])
        window.mode_box.setCurrentIndex(window.mode_box.findData("line"))
        await asyncio.sleep(3)
        shot(out / "desk_grid.png")
        window.single_action.setChecked(True)
        window.desk.set_indicators("chart", ["vwap"])
        window.desk.set_compare(["MSFT", "AMZN"])
        await asyncio.sleep(3)
        shot(out / "desk_compare.png")
    finally:
        window.close()
        await window.shutdown()
        await server.stop()


if __name__ == "__main__":
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)
    apply_dark_theme(app)
    qasync.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")))
