"""ticker_desktop: a live stock-price dashboard for ticker_server's protocol v1.

Layers, from the wire up: :mod:`.edge` and :mod:`.session` (pure protocol logic,
typed :mod:`.events`), :mod:`.connection` (socket, reconnect) and the facade
:mod:`.client` (all Qt-free); :mod:`.watched` (the one set of watched symbols),
:mod:`.buffers` and :mod:`.store` (pure numpy data); :mod:`.bridge` (client events
to Qt signals), then the widgets (:mod:`.watchlist`, :mod:`.charts`,
:mod:`.main_window`) and :mod:`.app`, which wires them.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
