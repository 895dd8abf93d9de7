"""``get NAME --watch``: one rollout followed live, from its durable record and the alias itself.

Each refresh costs three read calls whatever the rollout does: ``ListTags`` (the record), ``GetAlias``
(the traffic split callers really get) and one ``DescribeAlarms`` by name for the watched alarms.
The rollout is found once with the managed-marker scan. The document (``--source``) is optional: it
supplies what the record does not hold (the plan, so the step bar and pause countdown; the alarm
names; the desired version that ``--until-done`` waits for).

On a terminal the view is a rich Live screen; otherwise one plain line is printed per change, so a
CI log shows the story without a redraw per refresh. ``--until-done`` turns the watch into a gate:
0 once the rollout is Healthy on its desired version, 1 once it is RolledBack or Degraded (or on
``--timeout``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live

from controller.aws import AwsClients, AwsError
from controller.commands.rollouts import ManagedRollout, RolloutNotFound, managed_rollouts, matches, resolve
from controller.core.codec import CodecError
from controller.core.context import BLUE_GREEN_STEPS
from controller.core.plan import build_plan
from controller.core.reasons import NOT_AN_END
from controller.core.status import plan_steps, record_status
from controller.core.types import Phase, Record, Status, invalid_status
from controller.document.model import BlueGreenStrategy, Pause, RolloutSpec
from controller.observability.view import Snapshot, line, render

Clock = Callable[[], float]
#: What ``--until-done`` returns: the rollout ended where it was meant to, or it failed (or timed out).
DONE, FAILED = 0, 1


@dataclass(frozen=True)
class Plan:
    """What the document tells the view: step count, each step's timed pause, alarms, desired version."""

    steps: int = 0
    pauses: Mapping[int, float] = dataclasses.field(default_factory=dict)
    alarms: tuple[str, ...] = ()
    desired: str | None = None


def plan_of(spec: RolloutSpec | None, *, time_scale: float = 1.0) -> Plan:
    if spec is None:
        return Plan()
    alarms, desired = spec.analysis.alarms, spec.version
    if isinstance(spec.strategy, BlueGreenStrategy):
        return Plan(steps=BLUE_GREEN_STEPS, alarms=alarms, desired=desired)
    steps = build_plan(spec.strategy, time_scale=time_scale)
    pauses = {i: s.duration for i, s in enumerate(steps) if isinstance(s, Pause) and s.duration is not None}
    return Plan(steps=plan_steps(len(steps)), pauses=pauses, alarms=alarms, desired=desired)


def verdict(status: Status, *, desired: str | None) -> int | None:
    """``--until-done``: DONE, FAILED, or None to keep watching.

    Knowing the desired version (from the document) keeps a gate from passing on the previous
    release, or failing on the previous attempt, before the controller has picked the new one up.
    """
    if status.phase is Phase.HEALTHY and status.canary_version is None:
        if desired is None or status.stable_version == desired:
            return DONE
        return None
    if status.phase in (Phase.ROLLED_BACK, Phase.DEGRADED):
        attempts = [h for h in status.history if h.outcome not in NOT_AN_END]
        if desired is None or (attempts and attempts[-1].version == desired):
            return FAILED
    return None


class Watcher:
    """Finds one rollout and reads a ``Snapshot`` of it on demand."""

    def __init__(
        self,
        aws: AwsClients,
        *,
        name: str,
        specs: Mapping[str, RolloutSpec] | None = None,
        held: Mapping[str, tuple[str, ...]] | None = None,
        time_scale: float = 1.0,
        clock: Clock = time.time,
    ) -> None:
        self._aws = aws
        self._name = name
        self._specs = specs
        # Rollouts whose documents are invalid right now (key -> errors): shown Invalid with every error.
        self._held = held or {}
        self._time_scale = time_scale
        self._clock = clock
        self._rollout: ManagedRollout | None = None
        self._fresh = False  # the scan just read the tags: no ListTags needed this refresh

    def _spec(self) -> RolloutSpec | None:
        if self._specs is None:
            return None
        if self._rollout is not None:
            return self._specs.get(self._rollout.key)
        found = [spec for key, spec in self._specs.items() if matches(key, self._name)]
        return found[0] if len(found) == 1 else None

    def _held_key(self) -> str | None:
        found = [key for key in self._held if matches(key, self._name)]
        return found[0] if len(found) == 1 else None

    async def _locate(self) -> ManagedRollout | None:
        """The rollout's function and alias, found once; None while the controller has not started it."""
        if self._rollout is None:
            try:
                self._rollout = resolve(await managed_rollouts(self._aws), self._name)
                self._fresh = True
            except RolloutNotFound:
                if self._spec() is None and self._held_key() is None:
                    raise  # without a document there is nothing to wait for
        return self._rollout

    async def _record(self, rollout: ManagedRollout) -> Record | None:
        if not self._fresh:
            rollout = dataclasses.replace(rollout, tags=await self._aws.lambda_.list_tags(rollout.arn))
        self._fresh = False
        return rollout.record()

    async def snapshot(self) -> Snapshot:
        snapshot = await self._read()
        errors = self._held.get(snapshot.name)
        if errors:
            status = invalid_status(errors, previous=snapshot.status)
            return dataclasses.replace(snapshot, status=status)
        return snapshot

    async def _read(self) -> Snapshot:
        rollout = await self._locate()
        spec = self._spec()
        plan = plan_of(spec, time_scale=self._time_scale)
        if rollout is None:
            waiting = "no record yet: waiting for the controller to start this rollout"
            key = spec.key if spec is not None else self._held_key() or self._name
            return Snapshot(
                name=key,
                function=spec.function_name if spec is not None else "-",
                alias=spec.alias if spec is not None else "-",
                status=record_status(None, steps=plan.steps, message=waiting),
                now=self._clock(),
                desired=plan.desired,
            )
        try:
            record = await self._record(rollout)
            status = record_status(record, steps=plan.steps)
        except CodecError as exc:
            status = dataclasses.replace(record_status(None, steps=plan.steps), errors=(f"unreadable record: {exc}",))
        alias = await self._aws.lambda_.get_alias(rollout.function, rollout.alias)
        alarms: dict[str, str] = {}
        if plan.alarms:
            states = await self._aws.cloudwatch.alarm_states(plan.alarms)
            alarms = {name: states.get(name, "missing") for name in plan.alarms}
        return Snapshot(
            name=rollout.key,
            function=rollout.function,
            alias=rollout.alias,
            status=status,
            now=self._clock(),
            routing=alias.routing if alias is not None else None,
            pause=plan.pauses.get(status.current_step - 1),  # the plan's index of the step under way
            alarms=alarms,
            desired=plan.desired,
        )


def with_error(snapshot: Snapshot, error: str) -> Snapshot:
    return dataclasses.replace(snapshot, status=dataclasses.replace(snapshot.status, errors=(error,)))


async def watch(
    watcher: Watcher,
    *,
    console: Console,
    live: bool,
    interval: float = 2.0,
    until_done: bool = False,
    timeout: float | None = None,
    clock: Clock = time.monotonic,
) -> int:
    """Refresh every ``interval`` until Ctrl-C, or with ``until_done`` until the rollout ends.

    Raises ``RolloutNotFound`` when there is no such rollout and no document to wait on.
    """
    deadline = clock() + timeout if timeout is not None else None
    shown = ""
    last: Snapshot | None = None
    with Live(console=console, auto_refresh=False, transient=False) if live else _NoLive() as screen:
        while True:
            try:
                last = await watcher.snapshot()
            except AwsError as exc:
                # A refresh that failed is shown, not fatal: the next one may work (throttling, network).
                if last is None:
                    raise
                last = with_error(last, f"refresh failed: {exc}")
            if isinstance(screen, Live):
                screen.update(render(last), refresh=True)
            elif line(last, countdown=False) != shown:
                shown = line(last, countdown=False)
                console.print(f"{time.strftime('%H:%M:%S')} {line(last)}", highlight=False, soft_wrap=True)
            result = verdict(last.status, desired=last.desired) if until_done else None
            if result is not None:
                return result
            if deadline is not None and clock() >= deadline:
                console.print(f"timed out after {timeout:g}s: {last.name} is {last.status.phase}", highlight=False)
                return FAILED
            await asyncio.sleep(interval)


class _NoLive:
    """Stands in for ``Live`` when stdout is not a terminal."""

    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *_: object) -> None:
        return None
