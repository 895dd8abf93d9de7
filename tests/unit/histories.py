"""Random histories of the simulated shell, shared by the property tests (invariants, quiet skip).

One place for the strategies, settings and operations hypothesis draws from, so that every property
is checked over the same kinds of history: clock jumps and reconciles (``TICKS``), and the
disturbances ``World.disturb`` applies (alarms, alarm blips between polls, requests, drift, spec
edits, hook and metric outcomes, how the canary fails next to stable in the sequential tests' periods).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core.types import AliasRouting, Verb, Verdict
from controller.document.model import (
    AllAtOnceStrategy,
    Analysis,
    BlueGreenStrategy,
    CanaryStrategy,
    Concurrency,
    Hook,
    Hooks,
    LinearStrategy,
    Metric,
    MetricQuery,
    Pause,
    PresetStrategy,
    SequentialTest,
    SetWeight,
    Strategy,
    Threshold,
)
from tests.unit.simulator import World, api_spec, versions

STRATEGIES: tuple[Strategy, ...] = (
    PresetStrategy("Canary10Percent5Minutes"),
    PresetStrategy("Linear10PercentEvery1Minute"),
    LinearStrategy(step_percent=30, interval=90),
    CanaryStrategy((SetWeight(5), Pause(60), SetWeight(40), Pause(), SetWeight(60), Pause(120))),
    CanaryStrategy((SetWeight(20), SetWeight(50), Pause(30))),
    AllAtOnceStrategy(),
    BlueGreenStrategy(preview_alias="green", previous_alias="previous", auto_promote=True, auto_promote_after=120),
    BlueGreenStrategy(preview_alias="green"),
)
VERSIONS = ("1", "2", "3")
# Random histories per property: 300 in `make test`; a long hunt for rare interleavings sets
# LAMBDA_ROLLOUTS_HISTORIES (e.g. 40000: a couple of minutes per property).
HISTORIES = int(os.environ.get("LAMBDA_ROLLOUTS_HISTORIES", "300"))
WARM = Concurrency(reserved=10, provisioned=2, warmup_timeout=90.0)
METRICS = (
    Metric("error-rate", (MetricQuery("m", "Errors", "Sum"),), threshold=Threshold(max=5.0), failure_limit=2),
    Metric("latency", (MetricQuery("m", "Duration", "p99"),), threshold=Threshold(max=1e6), interval=120.0),
)
# Two tests of the same counts, one with a wider tolerance, read on 60 s and 30 s periods.
SEQUENTIAL = (
    SequentialTest("errors", period=60.0, publication_delay=30.0),
    SequentialTest("errors-loose", period=30.0, publication_delay=5.0, max_increase=1.0, confidence=0.9),
)
HOOKS = Hooks(before_allow_traffic=Hook(function="pre"), after_allow_traffic=Hook(url="https://example.com/post"))
ROUTINGS = st.one_of(
    st.none(),
    st.builds(AliasRouting, st.sampled_from(VERSIONS)),
    st.builds(
        AliasRouting,
        st.just("1"),
        st.sampled_from(("2", "3")),
        st.sampled_from((0.05, 0.1, 0.5, 0.9)),
    ),
)
TICKS = st.tuples(
    st.just("tick"),
    st.sampled_from((0.0, 1.0, 29.0, 30.0, 55.0, 59.0, 60.0, 61.0, 119.0, 120.0, 295.0, 299.0, 300.0, 3600.0, 1e6)),
    st.booleans(),  # alias read
    st.sampled_from((None, None, None, "before-write", "before-confirm")),
)
DISTURBANCES = st.one_of(
    st.tuples(st.just("alarm"), st.booleans()),
    st.tuples(st.just("blip"), st.just(True)),
    st.tuples(st.just("request"), st.sampled_from(list(Verb))),
    st.tuples(st.just("drift"), ROUTINGS),
    st.tuples(st.just("version"), st.sampled_from(VERSIONS)),
    st.tuples(st.just("paused"), st.booleans()),
    st.tuples(st.just("hooks"), st.booleans()),
    st.tuples(st.just("measure"), st.sampled_from(list(Verdict)[:3])),
    st.tuples(st.just("deliver"), st.just(True)),
    st.tuples(st.just("sequential"), st.sampled_from(("same", "worse", "silent"))),
)
# Mostly reconciles and clock jumps, so that rollouts get far enough for the disturbances to matter.
OPS = st.lists(st.one_of(TICKS, TICKS, TICKS, DISTURBANCES), max_size=60)
# Histories long enough, at the pace of the sequential tests' periods, for their evidence to build up
# to a conclusion (a proven regression, a pause ended early by promoteEarly) between disturbances: how
# the canary fails, alarms, the requests of a rollout in flight, spec edits, metric outcomes.
PERIODS = st.tuples(
    st.just("tick"),
    st.sampled_from((1.0, 30.0, 59.0, 60.0, 61.0, 90.0, 300.0)),
    st.booleans(),
    st.sampled_from((None, None, None, None, "before-write", "before-confirm")),
)
HOW_IT_FAILS = st.tuples(st.just("sequential"), st.sampled_from(("same", "worse", "silent")))
ALONGSIDE = st.one_of(
    st.tuples(st.just("alarm"), st.booleans()),
    st.tuples(st.just("request"), st.sampled_from((Verb.PROMOTE, Verb.ABORT, Verb.RETRY, Verb.PAUSE, Verb.RESUME))),
    st.tuples(st.just("version"), st.sampled_from(VERSIONS)),
    st.tuples(st.just("paused"), st.booleans()),
    st.tuples(st.just("measure"), st.sampled_from(list(Verdict)[:3])),
)
# Seven in ten operations are reconciles (``one_of`` would draw each of its branches alike).
LONG_OPS = st.lists(
    st.integers(0, 9).flatmap(lambda i: PERIODS if i < 7 else HOW_IT_FAILS if i < 9 else ALONGSIDE),
    min_size=30,
    max_size=120,
)
WEIGHT_STRATEGIES = tuple(s for s in STRATEGIES if not isinstance(s, BlueGreenStrategy | AllAtOnceStrategy))


def make_world(
    strategy: Strategy,
    deadline: float | None,
    concurrency: Concurrency | None = None,
    *,
    hooks: Hooks | None = None,
    revert: bool = False,
    metrics: tuple[Metric, ...] = (),
    sequential: tuple[SequentialTest, ...] = (),
) -> World:
    # Sequential tests are refused with blue/green, as the document does; with them, promoteEarly.
    tests = () if isinstance(strategy, BlueGreenStrategy) else sequential
    spec = api_spec(
        strategy,
        analysis=Analysis(alarms=("errors",), metrics=metrics, sequential=tests, promote_early=bool(tests)),
        progress_deadline=deadline,
        concurrency=concurrency,
        hooks=hooks or Hooks(),
        drift_policy="Revert" if revert else "Hold",
    )
    # Notifications on: every transition also goes through the record's outbox (and "deliver" clears it).
    # Busy enough (100,000 requests a period) for a sequential test to conclude within a pause.
    return World(spec=spec, alias=AliasRouting("1"), versions=versions("1", "2", "3"), announce=True, requests=100_000)


def random_histories(**more: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``@given`` a strategy, deadline, concurrency, hooks, drift policy and a history of ``OPS`` (plus ``more``).

    The test takes ``strategy``, ``deadline``, ``concurrency``, ``hooks``, ``revert`` and ``ops``.
    """
    drawn = settings(max_examples=HISTORIES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    return lambda test: drawn(
        given(
            strategy=st.sampled_from(STRATEGIES),
            deadline=st.sampled_from((None, 600.0)),
            concurrency=st.sampled_from((None, WARM)),
            hooks=st.sampled_from((None, HOOKS)),
            revert=st.booleans(),
            ops=OPS,
            **more,
        )(test)
    )


def sequential_histories(**more: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``@given`` a weight strategy, a deadline and a long history of ``LONG_OPS`` (plus ``more``), for
    worlds that declare ``SEQUENTIAL`` with ``promoteEarly``. The test takes ``strategy``, ``deadline``, ``ops``."""
    drawn = settings(max_examples=HISTORIES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    return lambda test: drawn(
        given(
            strategy=st.sampled_from(WEIGHT_STRATEGIES),
            deadline=st.sampled_from((None, 600.0)),
            ops=LONG_OPS,
            **more,
        )(test)
    )
