"""ticker_desktop: a live stock-price dashboard for ticker_server's protocol v1."""

__version__ = "0.1.0"
