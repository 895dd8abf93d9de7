"""The six invariants of decide(), proven over random histories with hypothesis.

Each example is a random sequence of operations applied to the pure simulator: clock jumps of any
size, reconciles (with or without an alias read, crashing between the write-ahead record and the
alias write or between the write and its confirmation), alarm flips, operator requests, manual alias
changes (drift) and spec edits. Every alias write the simulated shell makes is checked as it happens.

Half of the examples also declare reserved and provisioned concurrency, which adds a seventh rule:
a version gets no traffic before its provisioned concurrency is READY (``promote --full`` is the
documented bypass), and a finished rollout holds the declared provisioned concurrency on its
version only.

Half of the examples declare both lifecycle hooks (which pass or fail at random, flipped by a
disturbance) and half of them revert drift instead of holding: an eighth rule says no traffic reaches
the new version before its ``beforeAllowTraffic`` hook passed for the attempt in flight.

Half of the examples declare metric analysis, whose measurements pass, fail or have no data at random
(flipped by a disturbance): a ninth rule says no step moves past a weight without a passing
measurement of every declared metric, taken after that weight was applied (the latest one of each).

Half of the examples declare sequential tests with ``promoteEarly``, whose periods show the canary as
bad as stable, twenty times worse or silent (flipped by a disturbance): a tenth rule says a pause ends
before its time only by ``promoteEarly``, and only when the judgement of every declared test, on the
record as it stood, says NoRegression at the current weight.

An alarm may also go to ALARM and back between two polls (a "blip", known from the alarm history or a
pushed event): an eleventh rule says no write gives the canary more traffic in an attempt that was in
flight at a blip, or started at its very instant.

``promote --full --skip-analysis`` (``promote-bypass``) is the documented emergency bypass of the
alarms, hooks, analysis and the warm-up; like ``retry`` it gives a failed version its chance again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.lifecycle import BEFORE_ALLOW_TRAFFIC
from controller.core.plan import build_plan
from controller.core.reasons import Reason
from controller.core.sequential import Conclusion, verdict
from controller.core.sequential_analysis import fingerprint
from controller.core.spec_hash import spec_hash
from controller.core.types import AliasRouting, Decision, Phase, Record, UpdateAlias, Verb, Verdict
from controller.document.model import (
    BlueGreenStrategy,
    Concurrency,
    Hooks,
    Metric,
    Pause,
    PresetStrategy,
    SequentialTest,
    SetWeight,
    Strategy,
)
from tests.unit.histories import (
    HOOKS,
    METRICS,
    SEQUENTIAL,
    STRATEGIES,
    WARM,
    make_world,
    random_histories,
    sequential_histories,
)
from tests.unit.simulator import World


def traffic(version: str | None, routing: AliasRouting | None) -> float:
    if version is None or routing is None:
        return 0.0
    extra = routing.weight if routing.additional is not None else 0.0
    share = 0.0
    if routing.primary == version:
        share += 1.0 - extra
    if routing.additional == version:
        share += extra
    return share


def valid_for_aws(routing: AliasRouting) -> bool:
    if not routing.primary.isdigit():
        return False
    if routing.additional is None:
        return True
    return routing.additional.isdigit() and routing.additional != routing.primary and 0 < routing.weight < 1


@dataclass
class Checker:
    """Independent bookkeeping of what the invariants need, fed by the simulated shell."""

    world: World
    last_main: AliasRouting | None = None  # the controller's own last main-alias write
    last_applied_at: float | None = None
    last_weight: float = 0.0
    exempt: bool = True  # a promote/resume/spec edit/drift since the last applied weight
    failed: set[tuple[str, str]] = field(default_factory=set)
    writes_seen: int = 0
    bypassed: bool = False  # promote --full was asked for: it may skip the warm-up
    # A promote/resume asked for while a weight write was still pending applies to the step after
    # that write: the exemption outlives the (re-issued) pending write.
    carry: bool = False
    last_rollback_at: float = float("-inf")
    # When promoteEarly ended a pause (each checked against the judgement when it happened).
    early_ends: list[float] = field(default_factory=list)
    attempt: float | None = None  # the record's started_at: what a promote --full allowed ends with it
    # When the watched alarm last blipped (in ALARM between two polls).
    blipped_at: float | None = None

    def new_writes(self) -> None:
        w = self.world
        for write in w.writes[self.writes_seen :]:
            self.check_write(write.at, write.action, write.record.canary, write.record)
        self.writes_seen = len(w.writes)

    def check_write(self, at: float, action: UpdateAlias, canary: str | None, record: Record) -> None:
        routing = action.write.routing
        # 4. every alias write is valid for AWS.
        assert valid_for_aws(routing), routing
        # 2. a failed version gets no traffic without retry or a spec change.
        current = spec_hash(self.world.spec)
        for version in {routing.primary, routing.additional} - {None}:
            assert (version, current) not in self.failed, (version, self.failed)
        if action.write.alias != self.world.spec.alias:
            return
        if action.rollback or canary is None:
            self.last_main, self.last_applied_at, self.last_weight = routing, at, 0.0
            self.exempt = True
            self.last_rollback_at = at
            return
        # 1. traffic to the canary never goes down except by rollback, abort or supersede.
        before, after = traffic(canary, self.last_main), traffic(canary, routing)
        # 8. no traffic to the new version before its beforeAllowTraffic hook passed, in this attempt.
        hooks_apply = not record.bypass
        if self.world.spec.hooks.before_allow_traffic is not None and before <= 1e-9 < after and hooks_apply:
            runs = [r for r in self.world.hook_runs if r[1] == BEFORE_ALLOW_TRAFFIC and r[2] == canary]
            assert runs and runs[-1][3] is Verdict.SUCCESSFUL, (canary, runs)
            assert self.last_rollback_at <= runs[-1][0] <= at, (runs, self.last_rollback_at, at)
            assert any(h.name == BEFORE_ALLOW_TRAFFIC and h.outcome is Verdict.SUCCESSFUL for h in record.hooks)
        # 7. no traffic before the canary's provisioned concurrency is READY.
        if self.world.spec.concurrency is not None and after > 0 and not self.bypassed:
            assert self.world.is_warm(canary), (canary, self.world.provisioned, at)
        assert after >= before - 1e-9, (self.last_main, routing)
        # 10. an alarm that blipped during the attempt (or at its start) stops it growing.
        started = record.started_at
        if after > before + 1e-9 and not record.bypass and started is not None and self.blipped_at is not None:
            assert self.blipped_at < started, (self.blipped_at, started, at)
        # 9. no step moves past a weight before every metric's latest measurement since it passed.
        if self.world.spec.analysis.metrics and 1e-9 < before < after - 1e-9 and not self.exempt:
            assert self.last_applied_at is not None and not self.bypassed
            for metric in self.world.spec.analysis.metrics:
                taken = [
                    m
                    for m in self.world.measured
                    if m[1] == metric.name and m[2] == canary and m[4] >= self.last_applied_at and m[0] <= at
                ]
                assert taken and taken[-1][3] is Verdict.SUCCESSFUL, (metric.name, taken, self.last_applied_at, at)
        # 3. no pause is shortened, measured from when the previous weight was applied, but by promoteEarly.
        if after > before + 1e-9 and not self.exempt and self.last_applied_at is not None:
            needed = pause_between(self.world, before, after)
            if at - self.last_applied_at < needed - 1e-9:
                early = [t for t in self.early_ends if self.last_applied_at <= t <= at]
                assert early, (at, self.last_applied_at, needed, self.early_ends)
        if after > before + 1e-9:
            self.last_applied_at, self.last_weight = at, after
            self.exempt, self.carry = self.carry, False
        elif self.last_applied_at is None:
            # A write that moves no traffic to the canary (a drift revert) consumes no exemption.
            self.last_applied_at, self.last_weight = at, after
        self.last_main = routing

    def ended_early(self, decision: Decision) -> None:
        """10. promoteEarly ends a pause only when every declared test's judgement says NoRegression."""
        if not any(event.reason == Reason.PROMOTED_EARLY for event in decision.events):
            return
        analysis, record = self.world.spec.analysis, decision.record
        assert analysis.promote_early and analysis.sequential
        runs = {(run.state.name, run.test): run for run in record.sequential}
        for test in analysis.sequential:
            run = runs.get((test.name, fingerprint(test)))
            assert run is not None, (test.name, record.sequential)
            judged = verdict(run.state, settings=run.settings, since=record.weight_at)
            assert judged.conclusion is Conclusion.NO_REGRESSION, (test.name, judged, run.state, record.weight_at)
        self.early_ends.append(self.world.now)

    def requested(self, verb: Verb, pending: bool) -> None:
        """A request that applied: what it allows the next writes to do."""
        if verb in (Verb.PROMOTE, Verb.PROMOTE_FULL, Verb.PROMOTE_BYPASS, Verb.RESUME):
            self.exempt = True
            # Asked while a weight write was still pending: it applies to the step after that write.
            self.carry = pending
        self.bypassed = self.bypassed or verb in (Verb.PROMOTE_FULL, Verb.PROMOTE_BYPASS)

    def note_failures(self) -> None:
        record = self.world.record
        if record is None:
            return
        for f in record.failed:
            self.failed.add((f.version, f.spec_hash))


def pause_between(world: World, before: float, after: float) -> float:
    """Sum of the timed pauses a plan puts between reaching ``before`` and moving to ``after``."""
    if isinstance(world.spec.strategy, BlueGreenStrategy):
        return 0.0
    plan = build_plan(world.spec.strategy)
    total, counting = 0.0, before <= 1e-9
    for step in plan:
        if isinstance(step, SetWeight):
            if counting and step.weight / 100 >= after - 1e-9:
                return total
            if abs(step.weight / 100 - before) <= 1e-9:
                counting, total = True, 0.0
            elif counting:
                total = 0.0
        elif counting and step.duration is not None:
            total += step.duration
    return total if counting else 0.0


def finished(world: World) -> bool:
    r = world.record
    return (
        r is not None
        and r.phase is Phase.HEALTHY
        and r.canary is None
        and r.pending is None
        and r.stable == world.spec.version
        and world.alias == AliasRouting(r.stable)
        and (world.request is None or world.request.id == r.last_request)
    )


@random_histories(metrics=st.sampled_from(((), METRICS)), sequential=st.sampled_from(((), SEQUENTIAL)))
def test_invariants_hold_over_random_histories(
    strategy: Strategy,
    deadline: float | None,
    concurrency: Concurrency | None,
    hooks: Hooks | None,
    revert: bool,
    metrics: tuple[Metric, ...],
    sequential: tuple[SequentialTest, ...],
    ops: list[tuple[object, ...]],
) -> None:
    world = make_world(
        strategy, deadline, concurrency, hooks=hooks, revert=revert, metrics=metrics, sequential=sequential
    )
    check_history(world, ops)


def test_a_drift_reverted_while_an_alarm_counts_against_the_attempt_is_a_rollback_instead() -> None:
    """Found by the random histories: the first weight is pending (a crash before its write), an alarm
    blips at the attempt's very start, someone moves the alias by hand; ``driftPolicy: Revert`` must not
    write the canary's weight back, the alarm rolls the attempt back."""
    world = make_world(PresetStrategy(name="Canary10Percent5Minutes"), None, None, revert=True)
    ops: list[tuple[object, ...]] = [
        ("tick", 0.0, False, "before-write"),
        ("blip", True),
        ("drift", None),
        ("tick", 0.0, False, None),
    ]
    check_history(world, ops)
    assert world.record is not None and world.record.phase is Phase.ROLLED_BACK


def test_a_resume_during_drift_while_an_alarm_counts_against_the_attempt_is_a_rollback() -> None:
    """The same under ``driftPolicy: Hold``: the alias moved by hand and held, an alarm blips, someone
    asks ``resume``; handing the alias back to the controller rolls the attempt back."""
    world = make_world(PresetStrategy(name="Canary10Percent5Minutes"), None, None)
    ops: list[tuple[object, ...]] = [
        ("tick", 0.0, False, None),
        ("tick", 0.0, False, None),
        ("drift", None),
        ("tick", 0.0, True, None),
        ("blip", True),
        ("request", Verb.RESUME),
        ("tick", 0.0, True, None),
    ]
    check_history(world, ops)
    assert world.record is not None and world.record.phase is Phase.ROLLED_BACK


@sequential_histories(metrics=st.sampled_from(((), METRICS)))
def test_invariants_hold_while_sequential_tests_conclude(
    strategy: Strategy, deadline: float | None, metrics: tuple[Metric, ...], ops: list[tuple[object, ...]]
) -> None:
    check_history(make_world(strategy, deadline, metrics=metrics, sequential=SEQUENTIAL), ops)


def check_history(world: World, ops: list[tuple[object, ...]]) -> None:
    """Apply ``ops`` to ``world``, checking every invariant after every reconcile and alias write."""
    checker = Checker(world)
    asked: tuple[Verb, bool] | None = None  # a request not handled yet, and whether a write was pending
    for op in ops:
        kind = op[0]
        if kind == "tick":
            _, dt, read, crash = op
            world.now += float(dt)  # type: ignore[arg-type]
            decision = world.tick(read=bool(read), crash=crash)  # type: ignore[arg-type]
            record = world.record
            if record is not None and record.started_at != checker.attempt:
                checker.attempt, checker.bypassed = record.started_at, False
            handled = record is not None and world.request is not None and record.last_request == world.request.id
            if asked is not None and record is not None and handled:
                # What a request exempts holds only if it applied (the record says when it did not).
                if not record.request_ignored:
                    checker.requested(*asked)
                asked = None
            checker.ended_early(decision)
            checker.new_writes()
            checker.note_failures()
            # 5. idempotence: applied in full, deciding again at the same instant does nothing more
            # (except for the documented multi-write sequences, which ask for requeue_after=0).
            if crash is None and decision.requeue_after != 0 and read:
                again = world.decide()
                assert not again.actions, (decision, again)
            # 6. a finished rollout yields no actions, however often and whenever it is decided.
            if finished(world):
                saved = world.now
                for jump in (0.0, 1.0, 1e7):
                    world.now = saved + jump
                    assert not world.decide().actions
                    assert not world.decide(read=False).actions
                world.now = saved
        else:
            before = spec_hash(world.spec)
            world.disturb(kind, op[1])  # type: ignore[arg-type]
            if spec_hash(world.spec) != before:
                # Any change of the version (or what shapes the rollout) gives a failed version a fresh chance.
                checker.failed.clear()
            if kind == "blip":
                checker.blipped_at = world.now
            if kind == "request":
                verb = op[1]
                assert isinstance(verb, Verb)
                if verb in (Verb.RETRY, Verb.PROMOTE_BYPASS):
                    checker.failed = {f for f in checker.failed if f[0] != world.spec.version}
                asked = (verb, world.record is not None and world.record.pending is not None)
            elif kind in ("drift", "version"):
                checker.exempt = True


@settings(max_examples=200, deadline=None)
@given(
    strategy=st.sampled_from(STRATEGIES),
    steps=st.lists(st.sampled_from((1.0, 30.0, 55.0, 59.0, 60.0, 295.0, 600.0)), max_size=40),
    concurrency=st.sampled_from((None, WARM)),
    hooks=st.sampled_from((None, HOOKS)),
)
def test_an_undisturbed_rollout_finishes_and_then_stays_quiet(
    strategy: Strategy, steps: list[float], concurrency: Concurrency | None, hooks: Hooks | None
) -> None:
    world = make_world(strategy, None, concurrency, hooks=hooks)
    for dt in steps:
        world.now += dt
        world.tick()
    if not isinstance(strategy, BlueGreenStrategy) and all(
        not (isinstance(s, Pause) and s.duration is None) for s in build_plan(strategy)
    ):
        world.now += 1e6
        for _ in range(40):
            world.now += 600
            world.tick()
        assert world.alias == AliasRouting("2")
        assert world.record is not None and world.record.phase is Phase.HEALTHY
        if concurrency is not None:
            # The new version keeps the declared provisioned concurrency; the old one's was released.
            assert {q: requested for q, (requested, _) in world.provisioned.items()} == {"2": 2}
            assert world.reserved == 10
    for _ in range(3):
        world.now += 1e5
        if finished(world):
            assert not world.tick().actions


def test_a_backwards_clock_never_moves_a_weight() -> None:
    world = make_world(PresetStrategy("Canary10Percent5Minutes"), 600)
    world.tick()
    world.now -= 10_000
    for _ in range(5):
        assert not world.tick().actions
    assert world.alias == AliasRouting("1", "2", 0.1)
