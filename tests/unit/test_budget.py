"""The API budget's token buckets, driven by a fake clock: rates, priority order, wait statistics.

No real sleeping: the fake ``sleep`` advances the fake clock and yields to the event loop, so a test
of "10 calls at 2/s" takes microseconds and its timings are exact.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from controller.aws.budget import DEFAULT_RATES, FALLBACK_RATE, Budget, behind_others, serve_in_order

T = TypeVar("T")


class FakeClock:
    """Virtual time: ``sleep`` parks the caller until ``run`` advances the clock to its deadline.

    ``run`` lets every runnable task go first and only then jumps to the earliest deadline, so a task
    that arrives "during" someone else's sleep really does arrive before that sleep ends.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), future))
        await future

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        async def drive() -> T:
            task = asyncio.ensure_future(coro)
            while not task.done():
                for _ in range(50):  # let everything runnable run
                    await asyncio.sleep(0)
                    if task.done():
                        break
                else:
                    if not self._sleepers:
                        raise AssertionError("deadlock: nothing runnable and nobody sleeping")
                    deadline, _, future = heapq.heappop(self._sleepers)
                    self.now = max(self.now, deadline)
                    if not future.done():
                        future.set_result(None)
            return task.result()

        return asyncio.run(drive())


def _budget(rates: dict[str, float]) -> tuple[Budget, FakeClock]:
    clock = FakeClock()
    return Budget(rates, clock=clock, sleep=clock.sleep), clock


def test_defaults_are_below_aws_quotas() -> None:
    assert DEFAULT_RATES["lambda"] < 15
    assert DEFAULT_RATES["cloudwatch.describe_alarms"] < 9
    assert DEFAULT_RATES["cloudwatch.get_metric_data"] < 50
    assert Budget().rate("lambda") == DEFAULT_RATES["lambda"]
    assert Budget().rate("something-new") == FALLBACK_RATE
    assert Budget({"lambda": 3}).rate("lambda") == 3


@pytest.mark.parametrize("rate", [0, -1.0])
def test_rates_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError):
        Budget({"lambda": rate})


async def _run_sequential(budget: Budget, family: str, n: int) -> list[float]:
    return [await budget.acquire(family) for _ in range(n)]


def test_burst_then_steady_rate() -> None:
    budget, clock = _budget({"lambda": 2.0})
    start = clock.now
    waits = clock.run(_run_sequential(budget, "lambda", 10))
    # A full bucket (one second's worth: 2 tokens) goes at once, then one call every 0.5 s.
    assert waits[:2] == [0.0, 0.0]
    assert all(w == pytest.approx(0.5) for w in waits[2:])
    assert clock.now - start == pytest.approx(4.0)
    assert budget.stats()["lambda"] == pytest.approx(4.0)


def test_concurrent_callers_are_spaced_by_the_rate() -> None:
    budget, clock = _budget({"tagging": 4.0})
    done: list[float] = []

    async def one() -> None:
        await budget.acquire("tagging")
        done.append(clock.now)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(12)))

    start = clock.now
    clock.run(main())
    # 4 at once, then 8 more at 4/s: the last one two seconds later, never faster than the rate.
    assert len(done) == 12
    offsets = sorted(t - start for t in done)
    assert offsets[:4] == [0.0] * 4
    assert offsets[-1] == pytest.approx(2.0)
    for earlier, later in itertools.pairwise(offsets[4:]):
        assert later - earlier == pytest.approx(0.25)
    assert budget.queued("tagging") == 0


def test_families_are_independent() -> None:
    budget, clock = _budget({"lambda": 1.0, "cloudwatch.describe_alarms": 1.0})

    async def main() -> list[float]:
        return [
            await budget.acquire("lambda"),
            await budget.acquire("cloudwatch.describe_alarms"),
            await budget.acquire("lambda"),
        ]

    waits = clock.run(main())
    assert waits[0] == 0.0
    assert waits[1] == 0.0
    assert waits[2] == pytest.approx(1.0)
    assert budget.stats() == {"lambda": pytest.approx(1.0), "cloudwatch.describe_alarms": 0.0}


def test_tokens_refill_while_idle_but_never_beyond_one_second() -> None:
    budget, clock = _budget({"lambda": 3.0})

    async def main() -> list[float]:
        for _ in range(3):
            await budget.acquire("lambda")
        clock.now += 60  # a quiet minute: the bucket holds 3 tokens, not 180
        return [await budget.acquire("lambda") for _ in range(4)]

    waits = clock.run(main())
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(1 / 3)


def test_priority_callers_are_served_before_waiting_normal_ones() -> None:
    budget, clock = _budget({"lambda": 1.0})
    order: list[str] = []

    async def caller(name: str, *, priority: bool) -> None:
        await budget.acquire("lambda", priority=priority)
        order.append(name)

    async def main() -> None:
        await budget.acquire("lambda")  # empty the bucket
        normal = [asyncio.create_task(caller(f"n{i}", priority=False)) for i in range(3)]
        await asyncio.sleep(0)  # the normal callers are queued
        assert budget.queued("lambda") == 3
        rollback = [asyncio.create_task(caller(f"r{i}", priority=True)) for i in range(2)]
        await asyncio.gather(*normal, *rollback)

    clock.run(main())
    # n0 was already at the head, sleeping for the next token when the rollbacks arrived; the
    # rollbacks still go first (in their own arrival order), then the normal callers in theirs.
    assert order == ["r0", "r1", "n0", "n1", "n2"]


def test_normal_callers_are_served_in_the_order_of_their_work() -> None:
    """Standing, not arrival, decides among normal callers; equal standing keeps the arrival order."""
    budget, clock = _budget({"lambda": 1.0})
    order: list[str] = []

    async def caller(name: str, standing: int) -> None:
        serve_in_order(standing)  # this task's own context: the others keep theirs
        await budget.acquire("lambda")
        order.append(name)

    async def main() -> None:
        await budget.acquire("lambda")  # empty the bucket
        tasks = [asyncio.create_task(caller(name, standing)) for name, standing in [("c", 3), ("a", 1), ("b1", 2)]]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(caller("b2", 2)))
        await asyncio.gather(*tasks)

    clock.run(main())
    assert order == ["a", "b1", "b2", "c"]


def test_work_started_first_finishes_first() -> None:
    """Two reconciles of three calls each, started together: a pipeline, not the calls interleaved by kind."""
    budget, clock = _budget({"lambda": 1.0})
    served: list[str] = []

    async def reconcile(name: str, standing: int) -> None:
        serve_in_order(standing)
        for call in range(3):
            await budget.acquire("lambda")
            served.append(f"{name}{call}")

    async def main() -> None:
        await budget.acquire("lambda")
        await asyncio.gather(reconcile("first", 1), reconcile("second", 2))

    clock.run(main())
    assert served == ["first0", "first1", "first2", "second0", "second1", "second2"]


def test_a_call_behind_others_waits_for_the_queue_to_empty_but_rollbacks_still_go_first() -> None:
    budget, clock = _budget({"lambda": 1.0})
    order: list[str] = []

    async def caller(name: str, standing: int, *, behind: bool = False, priority: bool = False) -> None:
        serve_in_order(standing)
        if behind:
            with behind_others():
                await budget.acquire("lambda", priority=priority)
        else:
            await budget.acquire("lambda", priority=priority)
        order.append(name)

    async def main() -> None:
        await budget.acquire("lambda")
        tasks = [asyncio.create_task(caller("confirm", 1, behind=True))]
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(caller(f"new{i}", 10 + i)) for i in range(2)]
        tasks.append(asyncio.create_task(caller("rollback", 99, behind=True, priority=True)))
        await asyncio.gather(*tasks)

    clock.run(main())
    assert order == ["rollback", "new0", "new1", "confirm"]


def test_priority_caller_with_a_free_token_does_not_wait() -> None:
    budget, clock = _budget({"lambda": 5.0})
    assert clock.run(budget.acquire("lambda", priority=True)) == 0.0


def test_cancelled_waiter_hands_its_turn_on() -> None:
    budget, clock = _budget({"lambda": 1.0})
    served: list[str] = []

    async def caller(name: str) -> None:
        await budget.acquire("lambda")
        served.append(name)

    async def main() -> None:
        await budget.acquire("lambda")
        first = asyncio.create_task(caller("first"))
        second = asyncio.create_task(caller("second"))
        third = asyncio.create_task(caller("third"))
        await asyncio.sleep(0)
        second.cancel()
        await asyncio.gather(first, third, second, return_exceptions=True)

    clock.run(main())
    assert served == ["first", "third"]
    assert budget.queued("lambda") == 0


def test_real_clock_smoke() -> None:
    """With the real clock and a fast rate the waits are real but tiny."""
    budget = Budget({"lambda": 200.0})

    async def main() -> list[float]:
        return list(await asyncio.gather(*(budget.acquire("lambda") for _ in range(220))))

    waits = asyncio.run(main())
    assert sum(1 for w in waits if w == 0.0) >= 200
    assert max(waits) < 2.0
    assert budget.stats()["lambda"] > 0
