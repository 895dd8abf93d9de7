"""Our own share of the account's AWS API quotas: one token bucket per API family, rollbacks first.

botocore's adaptive retry mode slows a client down *after* AWS throttled it. The controller shares the
account with everybody else's deploy tools, so it also keeps a budget of its own below AWS's quotas
and never sends a burst that would get someone else throttled. Rollbacks must not queue behind a
thousand routine reads: a ``priority`` caller is served before any normal caller that is waiting.

Within a class, callers are served in the order of their *work*, not of their arrival: each task
says where its calls stand (``serve_in_order``; the engine gives each reconcile the number of its
launch), and a lower number goes first. A thousand new rollouts then form a pipeline: the first one's
alias read, record write and alias write are all served before the second one's first call, so the
first alias has its weight within a second instead of after everyone's reads (FIFO would serve each
kind of call across all rollouts before the next kind). Calls of the same standing keep their arrival
order. A write nothing waits for (the record confirming an alias write already made) can step back
behind every other waiting caller of its class (``behind_others``). Calls made outside any reconcile
(a tick's shared reads) stand at 0, ahead of every reconcile.

The buckets are plain asyncio code with an injected clock (and sleep), so unit tests drive them with a
fake clock instead of waiting. Only the head of a queue sleeps for the next token, the others wait to
be woken, so the order is strict.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["DEFAULT_RATES", "Budget", "behind_others", "serve_in_order"]

#: Requests per second per family, below AWS's quotas (Lambda control plane ~15/s, GetFunction 100/s,
#: DescribeAlarms 9, DescribeAlarmHistory 3 (not adjustable), GetMetricData 50, Resource Groups Tagging
#: GetResources ~5/s, SNS Publish hundreds per second or more, EventBridge 50/s for every API but
#: PutEvents, SQS standard queues "nearly unlimited").
DEFAULT_RATES: Mapping[str, float] = {
    "lambda": 10.0,
    "lambda.get_function": 50.0,  # GetFunction: a quota of its own (100/s), not the control plane's
    "lambda.invoke": 10.0,  # lifecycle hooks: data plane, not the control-plane quota
    "cloudwatch.describe_alarms": 5.0,
    "cloudwatch.describe_alarm_history": 1.0,  # one call a tick between polls, shared with every other tool
    "cloudwatch.get_metric_data": 25.0,
    "tagging": 5.0,
    "sts": 5.0,
    "sns": 10.0,  # notifications: far below SNS's Publish quota, and never taken from the Lambda family
    # The GitOps lease: one call per retry period. AWS: 2,500 control-plane requests/s per account
    # (DescribeTable, CreateTable); one item takes 1,000 writes and 3,000 consistent reads per second.
    "dynamodb": 10.0,
    "events": 5.0,  # the alarm-events rule: a few calls at start-up and when the watched alarms change
    "sqs": 10.0,  # the alarm-events queue: one long poll (and one delete) at a time
}
#: A family nobody configured gets this conservative rate rather than none at all.
FALLBACK_RATE = 5.0
# Refill arithmetic on large clock values leaves tokens at 0.999999...; without a tolerance (and a
# floor on the sleep) the head would sleep for less than the clock's resolution, forever.
_EPSILON = 1e-9
_MIN_SLEEP = 1e-3

# (behind others, standing) of the current task's calls: see the module docstring. Each asyncio task
# runs in a copy of its creator's context, so setting it in one reconcile leaves the others alone.
_STANDING: contextvars.ContextVar[tuple[bool, int]] = contextvars.ContextVar("budget_standing", default=(False, 0))
_ARRIVALS = itertools.count()


def serve_in_order(standing: int) -> None:
    """Where the calling task's calls stand in every budget queue from now on: lower goes first."""
    _STANDING.set((False, standing))


@contextlib.contextmanager
def behind_others() -> Iterator[None]:
    """Calls made in the block wait behind every caller of their class that does not (a write that
    nothing waits for: served when the queue is empty, never later than the rate allows then)."""
    token = _STANDING.set((True, _STANDING.get()[1]))
    try:
        yield
    finally:
        _STANDING.reset(token)


@dataclass(eq=False)
class _Waiter:
    wake: asyncio.Future[None] | None = None


# A normal caller's place in its queue: (behind others, standing, arrival), the waiter.
_Entry = tuple[tuple[bool, int, int], _Waiter]


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    updated: float
    # Rollbacks, in arrival order; then everyone else, a heap in the order of their work.
    high: collections.deque[_Waiter] = field(default_factory=collections.deque)
    low: list[_Entry] = field(default_factory=list)
    waited: float = 0.0

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def head(self) -> _Waiter | None:
        if self.high:
            return self.high[0]
        if self.low:
            return self.low[0][1]
        return None

    def enqueue(self, waiter: _Waiter, *, priority: bool) -> None:
        if priority:
            self.high.append(waiter)
        else:
            behind, standing = _STANDING.get()
            heapq.heappush(self.low, ((behind, standing, next(_ARRIVALS)), waiter))

    def discard(self, waiter: _Waiter) -> None:
        if waiter in self.high:
            self.high.remove(waiter)
        elif self.low and self.low[0][1] is waiter:
            heapq.heappop(self.low)  # the usual case: the head was served
        else:
            # Cancelled while waiting: rare, so a linear removal is fine.
            kept = [entry for entry in self.low if entry[1] is not waiter]
            if len(kept) != len(self.low):
                heapq.heapify(kept)
                self.low = kept

    def wake_head(self) -> None:
        head = self.head()
        if head is not None and head.wake is not None and not head.wake.done():
            head.wake.set_result(None)


class Budget:
    """Token buckets per API family (``"lambda"``, ``"cloudwatch.describe_alarms"`` ...).

    ``rates`` override ``DEFAULT_RATES`` per family (requests per second); each bucket holds at most one
    second's worth of tokens, so a burst never exceeds the rate. ``clock`` and ``sleep`` are injectable
    for tests.
    """

    def __init__(
        self,
        rates: Mapping[str, float] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        merged = {**DEFAULT_RATES, **(rates or {})}
        for family, rate in merged.items():
            if not rate > 0:
                raise ValueError(f"budget rate for {family!r} must be positive, got {rate!r}")
        self._rates = merged
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, _Bucket] = {}

    def rate(self, family: str) -> float:
        return self._rates.get(family, FALLBACK_RATE)

    def _bucket(self, family: str) -> _Bucket:
        bucket = self._buckets.get(family)
        if bucket is None:
            rate = self.rate(family)
            capacity = max(1.0, rate)
            bucket = _Bucket(rate=rate, capacity=capacity, tokens=capacity, updated=self._clock())
            self._buckets[family] = bucket
        return bucket

    async def acquire(self, family: str, *, priority: bool = False) -> float:
        """Take one token for ``family``, waiting if needed; returns the seconds waited.

        A ``priority`` caller (a rollback) goes ahead of every normal caller already waiting; normal
        callers go in the order of their work (``serve_in_order``, ``behind_others``).
        """
        bucket = self._bucket(family)
        start = self._clock()
        bucket.refill(start)
        if bucket.head() is None and bucket.tokens >= 1 - _EPSILON:
            bucket.tokens = max(0.0, bucket.tokens - 1)
            return 0.0
        waiter = _Waiter()
        bucket.enqueue(waiter, priority=priority)
        try:
            while True:
                if bucket.head() is waiter:
                    now = self._clock()
                    bucket.refill(now)
                    if bucket.tokens >= 1 - _EPSILON:
                        bucket.tokens = max(0.0, bucket.tokens - 1)
                        break
                    # Only the head sleeps; a caller arriving meanwhile that goes first (a rollback, or
                    # older work) becomes the head, and this one goes back to waiting when it wakes.
                    await self._sleep(max(_MIN_SLEEP, (1 - bucket.tokens) / bucket.rate))
                else:
                    waiter.wake = asyncio.get_running_loop().create_future()
                    await waiter.wake
                    waiter.wake = None
        finally:
            # Leaving the queue (served or cancelled) hands the turn to the next caller.
            bucket.discard(waiter)
            bucket.wake_head()
        waited = max(0.0, self._clock() - start)
        bucket.waited += waited
        return waited

    def stats(self) -> dict[str, float]:
        """Total seconds callers waited, per family used so far."""
        return {family: bucket.waited for family, bucket in self._buckets.items()}

    def queued(self, family: str) -> int:
        """Callers waiting for ``family`` right now (for tests and the benchmark)."""
        bucket = self._buckets.get(family)
        return 0 if bucket is None else len(bucket.high) + len(bucket.low)
