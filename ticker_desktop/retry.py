"""How long the client waits before it connects again, and how it tells the user why.

A server that greets and hangs up at once must not drive a tight reconnect loop,
so the backoff grows across such connections and starts again from its base only
once a connection has stayed live for a while; a close that asks us to stay away
(1013 "try again later", 1008 "policy violation") adds a fixed wait on top.
Everything here is pure: the random source is injected.
"""

from __future__ import annotations

from ticker_server.backoff import Backoff

from .edge import shorten

__all__ = ["Backoff", "close_floor", "describe_close", "describe_error"]

TRY_AGAIN_LATER = 1013
POLICY_VIOLATION = 1008


def close_floor(code: int | None, retry_later: float, policy_wait: float) -> float:
    """The fixed wait a close code asks for on top of the backoff (0 for the others)."""
    if code == TRY_AGAIN_LATER:
        return retry_later
    if code == POLICY_VIOLATION:
        return policy_wait
    return 0.0


def describe_close(what: str, code: int | None, reason: str) -> str:
    """``what`` with the close code and the server's (shortened) reason, if any."""
    if code is None:
        return what
    return f"{what} (code {code}{': ' + shorten(reason, 60) if reason else ''})"


def describe_error(exc: BaseException) -> str:
    """A connection failure in a few words for the status bar."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return shorten(text)
