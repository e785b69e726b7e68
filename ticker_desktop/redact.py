"""Keeping the bearer token out of every log line, even at DEBUG.

websockets logs each request header at DEBUG (``> Authorization: Bearer ...``);
the client hands it this logger instead of its own, which masks the token in the
message and its arguments before anything is formatted or handled.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "MaskedLogger", "redact_url", "url_secrets"]

MASK = "***"
SECRET_PARAMS = frozenset({"token", "access_token", "password", "secret", "key"})
"""Query parameters whose values are credentials (the server accepts ``?token=``)."""


def redact_url(url: str) -> str:
    """``url`` as it may be logged or shown: a password or a token in it masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
        query = urlencode([(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in pairs])
    else:
        query = parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class MaskedLogger(logging.LoggerAdapter[logging.Logger]):
    """``logger`` with every occurrence of each of ``secrets`` replaced by :data:`MASK`.

    Args:
        logger: where the lines go.
        secrets: the texts to mask; None and empty ones are left out.
    """

    def __init__(self, logger: logging.Logger, *secrets: str | None) -> None:
        super().__init__(logger, None)
        self._secrets = [s for s in secrets if s]

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self._secrets and self.isEnabledFor(level):
            msg = self._mask(str(msg))
            args = tuple(
                self._mask(str(a)) if any(s in str(a) for s in self._secrets) else a for a in args
            )
        super().log(level, msg, *args, **kwargs)


def url_secrets(url: str) -> list[str]:
    """The credentials inside ``url``: its password and secret query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    return found + [v for k, v in pairs if k.lower() in SECRET_PARAMS and v]
