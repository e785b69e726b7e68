"""ticker_desktop: a live stock-price dashboard for ticker_server's protocol v1.

Layers, from the wire up: :mod:`.client` (Qt-free asyncio client, typed
:mod:`.events`), :mod:`.buffers` and :mod:`.store` (pure numpy data),
:mod:`.bridge` (client events to Qt signals), then the widgets
(:mod:`.watchlist`, :mod:`.charts`, :mod:`.main_window`) and :mod:`.app`.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
