"""One unit for every timing bound in the tests, as websockets' ``tests/utils.py`` has.

Set ``TICKER_TEST_TIMING=3`` on a slow or busy machine and every wait and every asserted
bound grows together; ``TICKER_TEST_TIMEOUT`` still sets the single-wait bound alone.
"""

from __future__ import annotations

import os

__all__ = ["MS", "TIMEOUT"]

MS = 0.001 * float(os.environ.get("TICKER_TEST_TIMING", "1"))
"""One millisecond, scaled for slow machines: the unit of every timing bound a test asserts."""
TIMEOUT = float(os.environ.get("TICKER_TEST_TIMEOUT", 5000 * MS))
"""Upper bound for any single wait in a test (5 s unscaled)."""
