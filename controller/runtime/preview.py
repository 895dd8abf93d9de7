"""Read-only reconciles for ``plan`` and ``get --source``: what the controller would do next.

They share the engine's observe and decide steps (so a plan can never disagree with what ``run``
does) but stop before acting: no alias write, no tag write, ever. The sequential tests' periods due
are read too (one ``GetMetricData`` for all), so a plan shows what the next look does, and each
rollout's ``outlook`` says when the next one comes and what it may do.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from controller.analysis import Analysis
from controller.analysis.alarms import AlarmsProvider
from controller.analysis.queries import MetricQueries
from controller.aws import AwsClients
from controller.core.lifecycle import describe_hook
from controller.core.sequential_analysis import outlook
from controller.core.types import (
    Action,
    AliasRouting,
    DeleteProvisionedConcurrency,
    PublishVersion,
    PutEventInvokeConfig,
    PutProvisionedConcurrency,
    PutReservedConcurrency,
    RunHook,
)
from controller.document.model import RolloutSpec
from controller.document.ownership_config import OwnershipPolicy
from controller.runtime.inbox import TagInbox
from controller.runtime.observe import Observer
from controller.runtime.reads import TickReader
from controller.runtime.reconcile import Clock, Reconciler, ReconcileResult
from controller.runtime.records import RecordStore


@dataclass(frozen=True)
class Preview:
    """One rollout's next step, or why it could not be computed (an AWS error)."""

    spec: RolloutSpec
    outcome: ReconcileResult | None = None
    error: str | None = None
    # What the next look of each sequential test may do (``controller.core.sequential_analysis.outlook``).
    outlook: tuple[str, ...] = ()


async def preview_all(
    aws: AwsClients,
    specs: Sequence[RolloutSpec],
    *,
    clock: Clock = time.time,
    time_scale: float = 1.0,
    ownership: OwnershipPolicy | None = None,
) -> list[Preview]:
    """Observe and decide every rollout once, with the same shared reads a tick makes.

    ``ownership`` is the daemon's ``--ownership-config``: without it a preview cannot know that the
    controller would refuse a rollout (NotOwner) and would show a plan that never happens.
    """
    store = RecordStore(aws)
    reconciler = Reconciler(
        aws=aws, store=store, observer=Observer(aws), clock=clock, time_scale=time_scale, ownership=ownership
    )
    # The same shared reads as a tick, but no threshold measurement and no hook: a preview acts on nothing.
    periods = MetricQueries(aws.cloudwatch, time_scale=time_scale, thresholds=False)
    analysis = Analysis((AlarmsProvider(aws.cloudwatch), periods))
    reader = TickReader(store=store, inbox=TagInbox(store), analysis=analysis)
    for spec in specs:
        if spec.analysis.sequential:
            # The periods due are planned from the records: read the tags the preview reads anyway.
            # A failing read is reported by that rollout's own preview below.
            with contextlib.suppress(Exception):
                await store.function(spec.function_name)
    now = clock()
    reads = await reader.read(specs, now=now, wait=True)
    previews = []
    for spec in specs:
        try:
            outcome = await reconciler.preview(reads.inputs(spec, None))
            ahead = outlook(spec, outcome.decision.record, now, time_scale=time_scale)
            previews.append(Preview(spec, outcome=outcome, outlook=ahead))
        except Exception as exc:  # one rollout's AWS error must not hide the others' plans
            previews.append(Preview(spec, error=f"{type(exc).__name__}: {exc}"))
    return previews


def describe_routing(routing: AliasRouting) -> str:
    if routing.additional is None or routing.weight <= 0:
        return f"100% -> {routing.primary}"
    percent = round(routing.weight * 100, 2)
    return f"{100 - percent:g}% -> {routing.primary}, {percent:g}% -> {routing.additional}"


def describe_action(action: Action, function: str) -> str:
    """One human line per action, e.g. ``update alias prod of brand-api: 90% -> 42, 10% -> 43``."""
    if isinstance(action, PublishVersion):
        return f"publish $LATEST of {function} as a new version (CodeSha256 {action.code_sha256})"
    if isinstance(action, PutReservedConcurrency):
        return f"set reserved concurrency of {function} to {action.value}"
    if isinstance(action, PutProvisionedConcurrency):
        return f"provision {action.value} concurrent executions on version {action.qualifier} of {function}"
    if isinstance(action, DeleteProvisionedConcurrency):
        return f"release provisioned concurrency of version {action.qualifier} of {function}"
    if isinstance(action, PutEventInvokeConfig):
        return f"set async invocation settings of alias {action.qualifier} of {function}"
    if isinstance(action, RunHook):
        return (
            f"run hook {action.name} ({describe_hook(action.hook)}, timeout {action.hook.timeout:g}s) "
            f"for version {action.version} of {function}"
        )
    verb = "create" if action.create else "update"
    rollback = " (rollback)" if action.rollback else ""
    return f"{verb} alias {action.write.alias} of {function}: {describe_routing(action.write.routing)}{rollback}"
