"""ticker_server: a simulated market streamed over WebSocket with throttling and conflation."""

__version__ = "0.1.0"
