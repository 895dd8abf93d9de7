"""Random histories of the simulated shell, shared by the property tests (invariants, quiet skip).

One place for the strategies, settings and operations hypothesis draws from, so that every property
is checked over the same kinds of history: clock jumps and reconciles (``TICKS``), and the
disturbances ``World.disturb`` applies (alarms, alarm blips between polls, requests, drift, spec
edits, hook and metric outcomes).
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
)
# Mostly reconciles and clock jumps, so that rollouts get far enough for the disturbances to matter.
OPS = st.lists(st.one_of(TICKS, TICKS, TICKS, DISTURBANCES), max_size=60)


def make_world(
    strategy: Strategy,
    deadline: float | None,
    concurrency: Concurrency | None = None,
    *,
    hooks: Hooks | None = None,
    revert: bool = False,
    metrics: tuple[Metric, ...] = (),
) -> World:
    spec = api_spec(
        strategy,
        analysis=Analysis(alarms=("errors",), metrics=metrics),
        progress_deadline=deadline,
        concurrency=concurrency,
        hooks=hooks or Hooks(),
        drift_policy="Revert" if revert else "Hold",
    )
    # Notifications on: every transition also goes through the record's outbox (and "deliver" clears it).
    return World(spec=spec, alias=AliasRouting("1"), versions=versions("1", "2", "3"), announce=True)


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
