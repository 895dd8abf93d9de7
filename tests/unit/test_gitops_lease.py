"""The GitOps lease's algorithm on a fake clock and an in-memory store with DynamoDB's conditions.

What must hold (``controller.sources.lease``): a contender takes over only after it saw the same
version for a whole lease duration on its own clock; the holder stops writing at its renew deadline,
counted from when it sent its last renewal, which is before anyone may take over; a release hands
over at the contender's next look; of racing contenders exactly one wins. The store is a fake with
the conditions of the real table (the real one is tested against the emulator).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from controller.aws.dynamodb import LeaseRecord
from controller.aws.errors import AwsError, Conflict
from controller.sources.lease import GitOpsLease, Identity, LeaseSettings

SETTINGS = LeaseSettings(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def conflict() -> Conflict:
    return Conflict(code="ConditionalCheckFailedException", message="The conditional request failed", operation="X")


class Store:
    """One lease item with DynamoDB's conditional writes; ``down`` makes every call fail for whoever is cut off."""

    def __init__(self) -> None:
        self.item: LeaseRecord | None = None
        self.down: set[str] = set()
        self.writes: list[str] = []

    def view(self, holder: str) -> StoreView:
        return StoreView(self, holder)


class StoreView:
    """The store as one process reaches it (so one of them can be partitioned)."""

    def __init__(self, store: Store, who: str) -> None:
        self.store, self.who = store, who
        # Seconds each call takes on the shared clock (set by tests that need slow answers).
        self.latency = 0.0
        self.clock: Clock | None = None

    def _reach(self) -> None:
        if self.clock is not None:
            self.clock.advance(self.latency)
        if self.who in self.store.down:
            raise AwsError(code="ConnectTimeoutError", message="partitioned", operation="X")

    async def read(self) -> LeaseRecord | None:
        self._reach()
        return self.store.item

    async def put(self, record: LeaseRecord, *, replacing: str | None) -> None:
        self._reach()
        item = self.store.item
        if (replacing is None and item is not None) or (
            replacing is not None and (item is None or item.version != replacing)
        ):
            raise conflict()
        self.store.item = record
        self.store.writes.append(f"put {record.holder}")

    async def renew(self, *, holder: str, version: str, renewed_at: float) -> None:
        self._reach()
        item = self.store.item
        if item is None or item.holder != holder:
            raise conflict()
        self.store.item = replace(item, version=version, renewed_at=renewed_at)
        self.store.writes.append(f"renew {holder}")

    async def release(self, *, holder: str, version: str) -> None:
        self._reach()
        item = self.store.item
        if item is None or item.holder != holder:
            raise conflict()
        self.store.item = replace(item, holder="", version=version)
        self.store.writes.append(f"release {holder}")


versions = itertools.count()


def lease(store: Store, name: str, clock: Callable[[], float], settings: LeaseSettings = SETTINGS) -> GitOpsLease:
    lost: list[str] = []
    view = store.view(f"host-{name}:1:{name}")
    view.clock = clock if isinstance(clock, Clock) else None
    elected = GitOpsLease(
        view,
        identity=Identity(host=f"host-{name}", pid=1, token=name),
        settings=settings,
        clock=clock,
        wall_clock=clock,
        new_version=lambda: f"v{next(versions)}",
        on_lost=lambda: lost.append(name),
    )
    elected.lost = lost  # type: ignore[attr-defined]
    return elected


def rounds(*leases: GitOpsLease, clock: Clock, seconds: float, every: float = 2.0) -> None:
    """Every lease does a round every ``every`` seconds for ``seconds`` seconds of the fake clock."""

    async def go() -> None:
        end = clock.now + seconds
        while clock.now < end - 1e-9:
            clock.advance(every)
            for each in leases:
                await each.try_acquire_or_renew()

    asyncio.run(go())


def once(elected: GitOpsLease) -> bool:
    return asyncio.run(elected.try_acquire_or_renew())


def test_the_first_contender_acquires_a_free_lease() -> None:
    store, clock = Store(), Clock()
    first = lease(store, "a", clock)
    assert not first.known.is_set() and not first.may_write()
    assert once(first)
    assert first.may_write() and first.leading.is_set() and first.known.is_set()
    assert store.item is not None and store.item.holder == "host-a:1:a" and store.item.host == "host-a"
    assert first.waiting_reason() is None


def test_a_standby_takes_over_only_after_a_full_lease_duration_of_an_unchanged_version() -> None:
    store, clock = Store(), Clock()
    holder, standby = lease(store, "a", clock), lease(store, "b", clock)
    assert once(holder)
    # The holder renews every 2 s: the standby never takes over, however long it waits.
    rounds(holder, standby, clock=clock, seconds=60)
    assert holder.may_write() and not standby.may_write()
    assert standby.waiting_reason() == f"{standby.held_by()}; waiting"
    assert "lease default is held by host-a (pid 1) since " in (standby.held_by() or "")

    # The holder dies: its last version stays. The standby first saw it at most one round later.
    died_at = clock.now
    rounds(standby, clock=clock, seconds=14)
    assert not standby.may_write(), "took over before the lease duration"
    rounds(standby, clock=clock, seconds=2)
    assert standby.may_write()
    assert 15 <= clock.now - died_at <= 15 + 2 * 2
    assert store.item is not None and store.item.holder == "host-b:1:b" and store.item.transitions == 1


def test_a_renewal_restarts_the_standby_wait() -> None:
    store, clock = Store(), Clock()
    holder, standby = lease(store, "a", clock), lease(store, "b", clock)
    once(holder)
    assert not once(standby)  # first sight of the holder's version, at t = 0
    clock.advance(9)
    assert once(holder)  # renewed at t = 9: a new version
    clock.advance(6)
    assert not once(standby), "15 s since its first look, but only 6 s since the version changed"
    clock.advance(9)
    assert not once(standby)
    clock.advance(6)
    assert once(standby), "15 s of the same version: the holder is gone"


def test_the_holder_stops_writing_before_a_standby_may_take_over() -> None:
    store, clock = Store(), Clock()
    holder, standby = lease(store, "a", clock), lease(store, "b", clock)
    assert once(holder)
    assert not once(standby)
    clock.advance(2)
    sent = clock.now  # the holder's last renewal that gets through is sent at this instant
    assert once(holder)
    store.down.add("host-a:1:a")  # partitioned from the table: every renewal fails from now on
    stopped_at = None
    took_over_at = None
    step = 0.25
    while took_over_at is None:
        clock.advance(step)
        asyncio.run(holder.try_acquire_or_renew())
        if stopped_at is None and not holder.may_write():
            stopped_at = clock.now
        if asyncio.run(standby.try_acquire_or_renew()):
            took_over_at = clock.now
    assert stopped_at is not None
    assert stopped_at - sent == pytest.approx(SETTINGS.renew_deadline, abs=step)
    assert took_over_at - sent >= SETTINGS.lease_duration
    assert took_over_at - stopped_at >= SETTINGS.lease_duration - SETTINGS.renew_deadline - step
    assert holder.lost == ["a"]  # type: ignore[attr-defined]
    assert not holder.leading.is_set()


def test_the_deadline_counts_from_when_the_renewal_was_sent() -> None:
    store, clock = Store(), Clock()
    holder = lease(store, "a", clock)
    assert once(holder)
    view = holder._store
    assert isinstance(view, StoreView)
    view.latency = SETTINGS.renew_deadline + 1  # the answer comes after the deadline of its own send
    clock.advance(2)
    assert not once(holder)
    assert store.item is not None and store.item.holder == "host-a:1:a"  # it did land
    assert not holder.may_write() and holder.lost == ["a"]  # type: ignore[attr-defined]


def test_may_write_turns_false_at_the_deadline_even_without_a_round() -> None:
    store, clock = Store(), Clock()
    holder = lease(store, "a", clock)
    assert once(holder)
    clock.advance(SETTINGS.renew_deadline - 0.001)
    assert holder.may_write()
    clock.advance(0.001)
    assert not holder.may_write(), "no round ran, the answer is still exact"
    holder.expire_if_due()
    assert holder.lost == ["a"] and not holder.leading.is_set()  # type: ignore[attr-defined]


def test_a_holder_taken_over_steps_down_at_its_next_renewal() -> None:
    store, clock = Store(), Clock()
    holder, standby = lease(store, "a", clock), lease(store, "b", clock)
    once(holder)
    store.down.add("host-a:1:a")
    rounds(holder, standby, clock=clock, seconds=20)
    assert standby.may_write()
    store.down.clear()  # the partition heals: the old holder learns it lost
    assert not once(holder)
    assert not holder.may_write() and holder.held_by() is not None and "host-b" in (holder.held_by() or "")
    rounds(holder, standby, clock=clock, seconds=30)
    assert standby.may_write() and not holder.may_write()
    assert [w for w in store.writes if w.startswith("put")] == ["put host-a:1:a", "put host-b:1:b"]


def test_a_release_hands_over_at_the_next_look() -> None:
    store, clock = Store(), Clock()
    holder, standby = lease(store, "a", clock), lease(store, "b", clock)
    once(holder)
    once(standby)
    asyncio.run(holder.release())
    assert not holder.may_write() and holder.lost == ["a"]  # type: ignore[attr-defined]
    assert store.item is not None and store.item.holder == ""
    clock.advance(0.1)
    assert once(standby), "a released lease is taken without waiting"
    assert standby.waiting_reason() is None


def test_racing_contenders_for_a_free_lease_have_one_winner() -> None:
    store, clock = Store(), Clock()
    contenders = [lease(store, name, clock) for name in "abcde"]

    async def race() -> list[bool]:
        return list(await asyncio.gather(*(c.try_acquire_or_renew() for c in contenders)))

    results = asyncio.run(race())
    assert results.count(True) == 1
    assert sum(c.may_write() for c in contenders) == 1


def test_an_unreachable_table_is_warned_once_per_streak(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = Store(), Clock()
    standby = lease(store, "b", clock)
    store.down.add("host-b:1:b")
    with caplog.at_level(logging.WARNING, logger="controller.lease"):
        for _ in range(5):
            clock.advance(2)
            once(standby)
    assert standby.known.is_set() and not standby.may_write()
    assert len([r for r in caplog.records if "partitioned" in r.getMessage()]) == 1


def test_acquire_for_one_pass() -> None:
    fast = LeaseSettings(lease_duration=0.3, renew_deadline=0.2, retry_period=0.02)
    store = Store()
    free = lease(store, "a", time.monotonic, fast)
    assert asyncio.run(free.acquire()), "a free lease is taken at once"
    asyncio.run(free.release())

    holder, one_pass = lease(store, "h", time.monotonic, fast), lease(store, "o", time.monotonic, fast)

    async def while_renewed() -> tuple[bool, float]:
        stop = asyncio.Event()
        renewing = asyncio.create_task(holder.run(stop))
        while not holder.may_write():
            await asyncio.sleep(0.005)
        started = time.monotonic()
        try:
            return await one_pass.acquire(), time.monotonic() - started
        finally:
            stop.set()
            await renewing

    taken, took = asyncio.run(while_renewed())
    assert not taken, "a holder that renews is alive: the pass does not run"
    assert took < fast.lease_duration, "seen alive at its first renewal, without waiting a lease duration"

    dead = lease(store, "d", time.monotonic, fast)
    assert asyncio.run(dead.acquire())  # ... and then it never renews (killed)
    started = time.monotonic()
    assert asyncio.run(lease(store, "l", time.monotonic, fast).acquire())
    assert time.monotonic() - started >= fast.lease_duration


def test_the_deadline_timer_stops_the_writers_while_a_renewal_hangs() -> None:
    fast = LeaseSettings(lease_duration=0.6, renew_deadline=0.4, retry_period=0.08)
    store = Store()

    class Hanging(StoreView):
        hang = False

        async def renew(self, *, holder: str, version: str, renewed_at: float) -> None:
            if self.hang:
                await asyncio.Event().wait()  # a renewal that never answers
            await super().renew(holder=holder, version=version, renewed_at=renewed_at)

    view = Hanging(store, "h")
    lost_at: list[float] = []
    elected = GitOpsLease(
        view,
        identity=Identity(host="h", pid=1, token="t"),
        settings=fast,
        on_lost=lambda: lost_at.append(time.monotonic()),
    )

    async def scenario() -> float:
        stop = asyncio.Event()
        campaign = asyncio.create_task(elected.run(stop))
        while not elected.may_write():
            await asyncio.sleep(0.01)
        view.hang = True
        hung_at = time.monotonic()
        while not lost_at:
            await asyncio.sleep(0.01)
        campaign.cancel()
        await asyncio.gather(campaign, return_exceptions=True)
        return hung_at

    hung_at = asyncio.run(scenario())
    # Stopped at the deadline of the last renewal that got through, not after the hanging call.
    assert lost_at[0] - hung_at <= fast.renew_deadline + 0.1


def test_run_renews_logs_the_holder_once_and_releases_on_stop(caplog: pytest.LogCaptureFixture) -> None:
    fast = LeaseSettings(lease_duration=0.6, renew_deadline=0.4, retry_period=0.05)
    store = Store()
    holder = GitOpsLease(store.view("h"), identity=Identity(host="h", pid=1, token="h"), settings=fast)
    standby = GitOpsLease(store.view("s"), identity=Identity(host="s", pid=2, token="s"), settings=fast)

    async def scenario() -> None:
        stop_holder, stop_standby = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(holder.run(stop_holder))
        while not holder.may_write():
            await asyncio.sleep(0.01)
        second = asyncio.create_task(standby.run(stop_standby))
        await asyncio.sleep(1.0)  # well beyond a lease duration: the holder renews, the standby waits
        assert holder.may_write() and not standby.may_write()
        stop_holder.set()
        await first
        released = asyncio.get_running_loop().time()
        while not standby.may_write():
            await asyncio.sleep(0.005)
        assert asyncio.get_running_loop().time() - released <= fast.retry_period + 0.05
        stop_standby.set()
        await second

    with caplog.at_level(logging.INFO, logger="controller.lease"):
        asyncio.run(scenario())
    waiting = [r.getMessage() for r in caplog.records if "; waiting" in r.getMessage()]
    assert len(waiting) == 1 and waiting[0].startswith("lease default is held by h (pid 1) since ")
    assert "different --lease-name" in waiting[0]
    assert sum(w.startswith("renew h") for w in store.writes) >= 10
    assert store.item is not None and store.item.holder == ""  # the standby released it too


def test_settings_keep_client_go_proportions() -> None:
    scaled = LeaseSettings.scaled(3.0, name="payments")
    assert (scaled.lease_duration, scaled.renew_deadline, scaled.retry_period) == (3.0, 2.0, 0.4)
    assert scaled.name == "payments" and scaled.table == "lambda-rollouts-leases"
    with pytest.raises(ValueError):
        LeaseSettings(lease_duration=10, renew_deadline=10, retry_period=2)
