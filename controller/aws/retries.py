"""Retrying what AWS answers transiently, and saying so: short jittered backoff within the budget.

AWS throttles (``TooManyRequestsException``...), answers 5xx now and then and drops connections;
each is worth another attempt soon. botocore's own retries were a poor fit for a controller that
already paces itself below AWS's quotas (``controller.aws.budget``): its adaptive mode adds a
client-side rate limiter that cuts the send rate to a fraction after throttles and recovers slowly,
and both its modes wait up to 1, 2, 4... seconds (base 1 s). With 30% of calls throttled and 5%
answered 500, five canaries with 2 s pauses took 5.6-8x as long as without faults, one pause ended
30-44 s late, and about 3 calls/s went out instead of 12.

So botocore sends each request once and ``ApiCaller`` retries: at most ``attempts`` attempts in all,
the n-th retry after a full-jitter delay in [0, min(cap, base * 2^(n-1))] (50 ms, 100 ms, 200 ms,
400 ms: about 0.4 s in all on average for four retries), and every attempt takes a token of its budget
family first, so retries never raise the rate above the budget: the budget, not the backoff, is what
keeps the controller below the quota, and the backoff only spreads retries so that callers
throttled together do not come back together. Retried: throttling, 5xx, connection errors and
timeouts. Not retried: anything else AWS refused (4xx: a retry gets the same answer), a conflict
(the caller re-reads), and a write the fence stopped. A retried write is safe: alias writes carry
the RevisionId (a lost answer to a write that landed comes back as a conflict, which the engine
re-reads), tag writes and provisioned-concurrency puts are idempotent, a publish is guarded by the
code hash.

Nobody should have to guess why the controller is slow: ``FaultLog`` writes one WARNING per budget
family when AWS starts throttling or answering 5xx, then at most one per ``period`` (30 s) with the
counts since the last line, and the metrics count every attempt (``aws_api_calls_total`` by outcome)
and every retry (``aws_api_retries_total`` by reason, connection errors included). A connection
error is not AWS slowing down but the network or the endpoint: it is retried and counted, and if it
persists the caller reports the error itself (a command says so in one line).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CONNECTION", "SERVER_ERROR", "THROTTLED", "FaultLog", "RetryPolicy"]

logger = logging.getLogger("controller.aws")

# Why an attempt failed transiently (the ``reason`` label of the retry counter).
THROTTLED, SERVER_ERROR, CONNECTION = "throttled", "server_error", "connection"
_SAID = {THROTTLED: "throttled", SERVER_ERROR: "answered with a server error"}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a transient failure is tried again (see the module docstring)."""

    attempts: int = 5
    base: float = 0.05
    cap: float = 1.0

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before the ``retry``-th retry (1 = the second attempt)."""
        return rand() * min(self.cap, self.base * 2.0 ** (retry - 1))


@dataclass
class _Tally:
    faults: Counter[str] = field(default_factory=Counter)
    gave_up: int = 0
    logged_at: float | None = None


class FaultLog:
    """One WARNING per budget family when AWS throttles or fails, then at most one per ``period``."""

    def __init__(self, *, period: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._period = period
        self._clock = clock
        self._families: dict[str, _Tally] = {}

    def failed(self, *, family: str, reason: str, retried: bool) -> None:
        """An attempt of ``family`` failed transiently; ``retried``: another attempt follows."""
        if reason == CONNECTION:
            return  # not AWS's answer: see the module docstring
        tally = self._families.setdefault(family, _Tally())
        tally.faults[reason] += 1
        if not retried:
            tally.gave_up += 1
        now, last = self._clock(), tally.logged_at
        if last is not None and now - last < self._period:
            return
        since = "so far" if last is None else f"in the last {now - last:.0f}s"
        what = ", ".join(f"{n} {_SAID.get(r, r)}" for r, n in sorted(tally.faults.items()))
        outcome = f"{tally.gave_up} still failing after every retry" if tally.gave_up else "all retried"
        logger.warning(
            "AWS is slowing down %s calls: %s %s (%s); retrying with short backoff within the budget",
            family,
            what,
            since,
            outcome,
            extra={"family": family, "faults": dict(tally.faults), "gave_up": tally.gave_up},
        )
        self._families[family] = _Tally(logged_at=now)
