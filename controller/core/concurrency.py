"""Concurrency and async invocation as declared: the warm-up rule and the settings that converge.

Two kinds of rule live here, because AWS treats them differently:

- **Plain declared settings** (``concurrency.reserved``, ``asyncInvoke`` on the alias qualifier) are
  kept as the spec says: whenever the shell read them (on a spec change and on the slow drift check)
  and they differ, they are written back. Unlike traffic weights, whose drift is reported and held,
  a hand-made change here is simply undone: there is no half-done rollout to protect. A field removed
  from the spec is no longer managed and is left as it is.
- **Provisioned concurrency** lives on *version* qualifiers, one config per version: AWS refuses
  provisioned-concurrency changes on an alias that has routing weights, so a config on the weighted
  alias could not be touched mid-rollout. The stable version and the rollout's new version hold the
  declared value; a version the rollout is done with (the old stable after a promotion, a canary
  that was rolled back) is released. Before its first traffic the new version is warmed: the rollout
  waits (``Warming``, with allocated/requested in the status) until its config is ``READY``, for at
  most ``warmupTimeout``; past it the rollout is Degraded (``WarmupTimeout``), no traffic moved and
  the canary's config released.

Releases are both edge- and level-triggered: a decision that takes a version out releases it at
once (no read needed; "already released" is success in the shell), and whenever the configs were
read, any leftover on a version this rollout managed (previous stable, history) is released too, so
a crash between an alias write and a release leaks nothing for longer than one drift check.
"""

from __future__ import annotations

import dataclasses

from controller.core.context import Ctx, finish, warming, withdraw_decision
from controller.core.reasons import Outcome, Reason
from controller.core.types import (
    Decision,
    DeleteProvisionedConcurrency,
    EventInvokeConfig,
    Observed,
    Phase,
    ProvisionedStatus,
    PutEventInvokeConfig,
    PutProvisionedConcurrency,
    PutReservedConcurrency,
    Record,
    SettingAction,
    Warmup,
)
from controller.document.model import RolloutSpec


def declared_event_invoke(spec: RolloutSpec) -> EventInvokeConfig | None:
    settings = spec.async_invoke
    if settings is None:
        return None
    return EventInvokeConfig(
        maximum_retry_attempts=settings.maximum_retry_attempts,
        maximum_event_age_seconds=settings.maximum_event_age_seconds,
        on_success=settings.on_success,
        on_failure=settings.on_failure,
    )


# ---- the warm-up rule ----------------------------------------------------------------------------


def warm_up(ctx: Ctx) -> Ctx | Decision:
    """Rule: hold the new version's first traffic until its provisioned concurrency is READY."""
    record, spec = ctx.record, ctx.spec
    if not warming(spec, record) or spec.concurrency is None or spec.concurrency.provisioned is None:
        return ctx
    if not ctx.observed.provisioned_read:
        return finish(ctx, record, read_provisioned=True)
    canary, wanted = record.canary, spec.concurrency.provisioned
    assert canary is not None  # warming() says so
    config = ctx.observed.provisioned.get(canary)
    current = config if config is not None and config.requested == wanted else None
    if current is not None and current.status is ProvisionedStatus.READY:
        return ctx
    timeout = spec.concurrency.warmup_timeout
    elapsed = ctx.now - (record.step_started_at if record.step_started_at is not None else ctx.now)
    allocated = current.allocated if current is not None else 0
    if current is not None and current.status is ProvisionedStatus.FAILED:
        message = (
            f"provisioned concurrency of version {canary} failed ({current.reason or 'no reason given'}): "
            f"rolled back to {record.stable} before any traffic; `retry` or a spec change starts it again"
        )
        return _give_up(ctx, Reason.WARMUP_FAILED, message)
    if elapsed > timeout:
        message = (
            f"version {canary} not warm after {timeout:.0f}s (provisioned concurrency {allocated}/{wanted} "
            f"allocated): rolled back to {record.stable} before any traffic; `retry` or a spec change starts it again"
        )
        return _give_up(ctx, Reason.WARMUP_TIMEOUT, message)
    status = str(current.status) if current is not None else "requested"
    # The record keeps a stable message; the progress is shown live in the status only.
    message = f"warming version {canary}: provisioned concurrency {wanted} before its first traffic"
    live = f"{message}: {allocated}/{wanted} allocated ({status}), {timeout - elapsed:.0f}s of {timeout:.0f}s left"
    new = dataclasses.replace(record, phase=Phase.PROGRESSING, reason=Reason.WARMING, message=message)
    warmup = Warmup(version=canary, requested=wanted, allocated=allocated, status=status)
    return finish(ctx, new, live=live, warmup=warmup, requeue_after=max(timeout - elapsed, 0.0))


def _give_up(ctx: Ctx, reason: Reason, message: str) -> Decision:
    return withdraw_decision(
        ctx, phase=Phase.DEGRADED, reason=reason, message=message, outcome=Outcome.DEGRADED, fail=True
    )


# ---- settings that converge ----------------------------------------------------------------------


def _holders(record: Record) -> set[str]:
    """Versions that hold the declared provisioned concurrency: stable, and the new version in flight."""
    return {v for v in (record.stable, record.canary) if v is not None and v.isdigit()}


def _managed(record: Record) -> set[str]:
    """Versions this rollout ever provisioned: the only ones it may release."""
    versions = {record.previous_stable, *(entry.version for entry in record.history)}
    return {v for v in versions if v is not None and v.isdigit()} | _holders(record)


def setting_actions(
    spec: RolloutSpec, original: Record | None, record: Record, observed: Observed
) -> tuple[SettingAction, ...]:
    """What to write so the declared settings hold, for the record the decision ends with.

    Order matters to AWS: releases first (they free room under the reserved concurrency), then the
    reserved value, then new provisioned configs, then the async settings.
    """
    releases: list[SettingAction] = []
    puts: list[SettingAction] = []
    concurrency = spec.concurrency
    if concurrency is not None and concurrency.provisioned is not None:
        holders = _holders(record)
        gone = (_holders(original) - holders) if original is not None else set()
        if observed.provisioned_read:
            gone = {q for q in observed.provisioned if q in _managed(record) and q not in holders}
            for version in sorted(holders, key=int):
                config = observed.provisioned.get(version)
                if config is None or config.requested != concurrency.provisioned:
                    puts.append(PutProvisionedConcurrency(version, concurrency.provisioned))
        releases = [DeleteProvisionedConcurrency(v) for v in sorted(gone, key=int)]
    reserved: list[SettingAction] = []
    async_config: list[SettingAction] = []
    if observed.settings_read:
        declared = concurrency.reserved if concurrency is not None else None
        if declared is not None and observed.reserved_concurrency != declared:
            reserved.append(PutReservedConcurrency(declared))
        wanted = declared_event_invoke(spec)
        if wanted is not None and observed.event_invoke != wanted:
            async_config.append(PutEventInvokeConfig(spec.alias, wanted))
    return (*releases, *reserved, *puts, *async_config)


def with_settings(spec: RolloutSpec, original: Record | None, observed: Observed, decision: Decision) -> Decision:
    """The decision with the setting writes appended (after its alias write, if any).

    Nothing is added while the spec is Invalid (bad input changes nothing in AWS) or when the shell
    is about to read more and decide again.
    """
    if decision.status.phase is Phase.INVALID or decision.read_alias or decision.read_provisioned:
        return decision
    extra = setting_actions(spec, original, decision.record, observed)
    if not extra:
        return decision
    return dataclasses.replace(decision, actions=(*decision.actions, *extra))


__all__ = ["declared_event_invoke", "setting_actions", "warm_up", "with_settings"]
