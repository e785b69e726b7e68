"""The one backoff both sides use: full jitter under a doubling cap."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from ticker_server.backoff import Backoff


@given(seed=st.integers(0, 2**32), attempts=st.integers(1, 30))
def test_backoff_full_jitter_stays_under_a_doubling_cap(seed: int, attempts: int) -> None:
    """Each delay lies in [0, min(cap, base*2**n)] and reset starts again from the base."""
    backoff = Backoff(0.5, 30.0, random.Random(seed))
    for n in range(attempts):
        delay = backoff.next_delay()
        assert 0.0 <= delay <= min(30.0, 0.5 * 2**n)
    backoff.reset()
    assert backoff.ceiling() == 0.5


def test_backoff_spreads_clients_out() -> None:
    """Full jitter spreads many clients' first retries over the whole window."""
    delays = [Backoff(0.5, 30.0, random.Random(i)).next_delay() for i in range(200)]
    assert min(delays) < 0.1 and max(delays) > 0.4


def test_floor_is_added_to_the_jittered_delay() -> None:
    """A caller's floor comes on top of the jittered delay, which stays under the ceiling."""
    for seed in range(50):
        delay = Backoff(0.5, 30.0, random.Random(seed)).next_delay(2.0)
        assert 2.0 <= delay <= 2.5
