"""Observe: build the core's ``Observed`` for one rollout from the fewest AWS reads.

Cost per tick must not grow with idle rollouts, so almost everything here is either shared by all
rollouts (the tick's ``Inputs``: evidence and control requests, read once per tick,
``controller.runtime.reads``) or cached: published versions are immutable, so their configuration
is read once; a ``publish`` document's code hash maps to one version forever. The alias itself is
read only when the caller asks (before a write, with a pending write, at start-up, on the slow drift
check).

Declared settings are read only when declared: reserved concurrency and the alias's async config
when they changed in the spec since they were last checked and on the slow drift check; the
provisioned-concurrency configs (one List call) with them, and on every tick while the new version
is warming, since that is what the rollout waits for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.aws import AwsClients
from controller.aws.lambda_ import AliasState
from controller.core.types import (
    EventInvokeConfig,
    Observed,
    ProvisionedConfig,
    Record,
    VersionInfo,
)
from controller.document.model import BlueGreenStrategy, RolloutSpec
from controller.document.names import LATEST, function_name_of
from controller.runtime.reads import Inputs


@dataclass(frozen=True)
class Observation:
    """``Observed`` plus the alias states behind it, whose RevisionIds the next writes must send."""

    observed: Observed
    aliases: Mapping[str, AliasState | None] = field(default_factory=dict)


def strategy_aliases(spec: RolloutSpec) -> tuple[str, ...]:
    """Every alias the rollout may write: the main one, then blue/green's preview and previous."""
    names = [spec.alias]
    if isinstance(spec.strategy, BlueGreenStrategy):
        names.append(spec.strategy.preview_alias)
        if spec.strategy.previous_alias:
            names.append(spec.strategy.previous_alias)
    return tuple(dict.fromkeys(names))


class Observer:
    """Reads AWS for ``decide`` and remembers what can never change."""

    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws
        self._versions: dict[tuple[str, str], VersionInfo] = {}
        self._by_sha: dict[tuple[str, str], str] = {}
        # The hash of ``$LATEST`` seen by the last lookup of a code hash that no version has.
        self._latest_sha: dict[tuple[str, str], str | None] = {}
        # rollout key -> the declared settings last read and made to hold.
        self._settings_checked: dict[str, object] = {}

    async def observe(
        self,
        inputs: Inputs,
        record: Record | None,
        *,
        function_exists: bool,
        read_aliases: bool,
        read_settings: bool = False,
        read_provisioned: bool = False,
        priority: bool = False,
    ) -> Observation:
        """Observe one rollout; ``read_aliases`` re-reads its aliases (a Lambda call each), ``read_settings``
        the declared reserved concurrency and async config, ``read_provisioned`` the provisioned configs.
        ``priority``: the alias reads are for a rollback, served first by the API budget."""
        if not function_exists:
            return Observation(Observed(function_exists=False))
        spec = inputs.spec
        function = function_name_of(spec.function_name)
        aliases = await self.read_aliases(spec, priority=priority) if read_aliases else {}
        main = aliases.get(spec.alias)
        desired = await self._desired_version(spec)
        versions, missing = await self._versions_of(function, _versions_in_play(desired, record, aliases))
        observed = dataclasses.replace(
            from_the_tick(inputs),
            function_exists=True,
            alias_read=read_aliases,
            alias_exists=main is not None,
            alias=main.routing if main is not None else None,
            other_aliases={n: s.routing for n, s in aliases.items() if n != spec.alias and s is not None},
            desired_version=desired,
            versions=versions,
            missing_versions=missing,
            missing_alarms=inputs.evidence.missing_alarms,
            latest_code_sha256=self._code_mismatch(spec, desired),
            announce=inputs.announce,
            announced=inputs.announced,
        )
        if read_settings:
            reserved, event_invoke = await self._settings(spec)
            observed = dataclasses.replace(
                observed, settings_read=True, reserved_concurrency=reserved, event_invoke=event_invoke
            )
        if read_provisioned:
            configs = await self._provisioned(spec)
            observed = dataclasses.replace(observed, provisioned_read=True, provisioned=configs)
        return Observation(observed, aliases)

    def settings_due(self, spec: RolloutSpec) -> bool:
        """The declared settings changed since they were last made to hold (or never were)."""
        return declares_settings(spec) and self._settings_checked.get(spec.key) != _declared(spec)

    def settings_checked(self, spec: RolloutSpec) -> None:
        """The declared settings were read and the writes that make them hold were made."""
        self._settings_checked[spec.key] = _declared(spec)

    async def _settings(self, spec: RolloutSpec) -> tuple[int | None, EventInvokeConfig | None]:
        lam = self._aws.lambda_
        reserved = None
        if spec.concurrency is not None and spec.concurrency.reserved is not None:
            reserved = await lam.get_reserved_concurrency(spec.function_name)
        event_invoke = None
        if spec.async_invoke is not None:
            event_invoke = await lam.get_event_invoke_config(spec.function_name, spec.alias)
        return reserved, event_invoke

    async def _provisioned(self, spec: RolloutSpec) -> dict[str, ProvisionedConfig]:
        if spec.concurrency is None or spec.concurrency.provisioned is None:
            return {}
        return await self._aws.lambda_.list_provisioned(spec.function_name)

    async def read_aliases(self, spec: RolloutSpec, *, priority: bool = False) -> dict[str, AliasState | None]:
        function, lam = spec.function_name, self._aws.lambda_
        return {name: await lam.get_alias(function, name, priority=priority) for name in strategy_aliases(spec)}

    def remember_published(self, spec: RolloutSpec, version: str) -> None:
        """Record the version a ``PublishVersion`` produced, so it is never looked up again."""
        if spec.publish is not None:
            self._by_sha[(function_name_of(spec.function_name), spec.publish.code_sha256)] = version

    def forget_rollout(self, key: str) -> None:
        self._settings_checked.pop(key, None)

    async def _desired_version(self, spec: RolloutSpec) -> str | None:
        if spec.publish is None:
            return spec.version
        cache_key = (function_name_of(spec.function_name), spec.publish.code_sha256)
        if cache_key not in self._by_sha:
            found = await self._aws.lambda_.find_version_by_sha(spec.function_name, spec.publish.code_sha256)
            self._latest_sha[cache_key] = found.latest_code_sha256
            if found.version is None:
                return None
            self._by_sha[cache_key] = found.version
        return self._by_sha[cache_key]

    def _code_mismatch(self, spec: RolloutSpec, desired: str | None) -> str | None:
        """``$LATEST``'s hash when ``spec.publish`` asks for other code that no version has (AWS would refuse)."""
        if spec.publish is None or desired is not None:
            return None
        latest = self._latest_sha.get((function_name_of(spec.function_name), spec.publish.code_sha256))
        return latest if latest is not None and latest != spec.publish.code_sha256 else None

    async def _versions_of(self, function: str, wanted: set[str]) -> tuple[dict[str, VersionInfo], frozenset[str]]:
        found: dict[str, VersionInfo] = {}
        missing: set[str] = set()
        for version in sorted(wanted):
            info = self._versions.get((function, version))
            if info is None:
                info = await self._aws.lambda_.get_version(function, version)
                if info is None:
                    missing.add(version)
                    continue
                self._versions[(function, version)] = info
            found[version] = info
        return found, frozenset(missing)


def from_the_tick(inputs: Inputs) -> Observed:
    """What the core observes from the tick's shared reads alone (no read of the rollout's own): the
    request and the evidence. The reconcile adds its own reads to it; the engine's check for a rollback
    it must not wait for (``Reconciler.would_roll_back``) decides on it as it is."""
    evidence = inputs.evidence
    return Observed(
        alarms_in_alarm=evidence.firing,
        alarm_instants=evidence.alarm_instants,
        request=inputs.request,
        measurements=evidence.measurements,
        looks=evidence.looks,
        hook_answers=evidence.hook_answers,
        hooks_running=evidence.hooks_running,
    )


def declares_settings(spec: RolloutSpec) -> bool:
    """The spec declares a setting the controller keeps (reserved or provisioned concurrency, async config)."""
    concurrency = spec.concurrency
    declared = concurrency is not None and (concurrency.reserved is not None or concurrency.provisioned is not None)
    return declared or spec.async_invoke is not None


def declares_provisioned(spec: RolloutSpec) -> bool:
    return spec.concurrency is not None and spec.concurrency.provisioned is not None


def _declared(spec: RolloutSpec) -> object:
    return (spec.concurrency, spec.async_invoke)


def _versions_in_play(desired: str | None, record: Record | None, aliases: Mapping[str, AliasState | None]) -> set[str]:
    """Published versions the checks may need: desired, the record's, and whatever the aliases route to."""
    wanted: set[str | None] = {desired}
    if record is not None:
        wanted |= {record.stable, record.canary}
    for state in aliases.values():
        if state is not None:
            wanted |= {state.routing.primary, state.routing.additional}
    return {v for v in wanted if v is not None and v != LATEST}
