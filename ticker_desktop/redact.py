"""Keeping the bearer token out of every log line, even at DEBUG.

websockets logs each request header at DEBUG (``> Authorization: Bearer ...``);
the client hands it this logger instead of its own, which masks the token in the
message and its arguments before anything is formatted or handled.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["MASK", "MaskedLogger"]

MASK = "***"


class MaskedLogger(logging.LoggerAdapter[logging.Logger]):
    """``logger`` with every occurrence of ``secret`` replaced by :data:`MASK`.

    Args:
        logger: where the lines go.
        secret: the text to mask; None or empty masks nothing.
    """

    def __init__(self, logger: logging.Logger, secret: str | None) -> None:
        super().__init__(logger, None)
        self._secret = secret

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        secret = self._secret
        if secret and self.isEnabledFor(level):
            msg = str(msg).replace(secret, MASK)
            args = tuple(str(a).replace(secret, MASK) if secret in str(a) else a for a in args)
        super().log(level, msg, *args, **kwargs)
