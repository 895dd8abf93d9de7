"""Per-rollout back-off: one failing rollout slows down alone, never the loop.

Exponential growth with "equal jitter" (half fixed, half random) so that many rollouts failing for
the same reason (an AWS outage, throttling) do not retry in lock-step, with a cap so a fixed problem
is noticed within a few minutes.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    failures: int,
    *,
    base: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1 = first failure)."""
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * 2.0 ** (failures - 1))
    return ceiling / 2 + rand() * ceiling / 2
