"""A pure, in-memory stand-in for one function's aliases and the shell around ``decide``.

It does what the real shell does, in the same order (observe, decide, persist the write-ahead
record, write the alias, persist ``confirm``), and can "crash" between any two of those, so tests
can drive ``decide`` through long random histories and check invariants on every alias write.

It also keeps the declared settings as AWS would (reserved concurrency, the alias's async config,
provisioned-concurrency configs per qualifier that turn READY ``warm_delay`` seconds after they were
put) and applies the core's setting actions. Like the shell, it reads the provisioned configs
while the new version is warming, and everything when it reads the alias.

Lifecycle hooks run beside the reconciles as the shell runs them: started by a ``RunHook``, they
answer ``hook_delay`` seconds later (at the next tick when 0) as ``hooks_pass`` says at that moment,
and the answer is handed to the next decide. Every run is logged in ``hook_runs`` (independent of
the record) so invariants can check what ran before which write.

Metric analysis: like the shell, each tick measures the metrics the core says are due
(``due_metrics``) and hands them over in ``Observed.measurements``; the outcome is ``metric_verdict``
at that time (Successful: value 0; Failed: a huge value; Inconclusive: no data; the simulated
metrics use ``threshold.max`` / ``compareToStable``). Every measurement is logged in ``measured``.

Sequential analysis: likewise each tick reads the periods the core says are due (``due_tests``) and
hands them over in ``Observed.looks``, with counts made from ``sequential``: ``same`` (the canary fails
as often as stable, 2%), ``worse`` (20 times as often) or ``silent`` (no requests at all), for
``requests`` requests a period split by the current weight. Every look is logged in ``looked``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from controller.core.context import warming
from controller.core.decide import confirm, decide
from controller.core.metric_analysis import due_metrics, period_of, window
from controller.core.sequential import Look
from controller.core.sequential_analysis import due_tests, fingerprint
from controller.core.sequential_analysis import period_of as sequential_period
from controller.core.types import (
    Action,
    AliasRouting,
    Decision,
    DeleteProvisionedConcurrency,
    EventInvokeConfig,
    HookAnswer,
    Measurement,
    Observed,
    ProvisionedConfig,
    ProvisionedStatus,
    PublishVersion,
    PutEventInvokeConfig,
    PutProvisionedConcurrency,
    PutReservedConcurrency,
    Record,
    Request,
    RunHook,
    SequentialLooks,
    UpdateAlias,
    Verb,
    Verdict,
    VersionInfo,
)
from controller.document.model import RolloutSpec, Strategy


@dataclass(frozen=True)
class Write:
    """One alias write the simulated shell made."""

    at: float
    action: UpdateAlias
    before: AliasRouting | None
    record: Record  # the write-ahead record that asked for it


@dataclass
class World:
    spec: RolloutSpec
    alias: AliasRouting | None = None
    side: dict[str, AliasRouting] = field(default_factory=dict)
    record: Record | None = None
    now: float = 1_000.0
    alarms: frozenset[str] = frozenset()
    # Alarm -> the latest instant it was in ALARM (the history or an event), whatever its state now.
    alarm_instants: dict[str, float] = field(default_factory=dict)
    request: Request | None = None
    versions: dict[str, VersionInfo] = field(default_factory=dict)
    published: str | None = None
    writes: list[Write] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    requests_made: int = 0
    time_scale: float = 1.0
    reserved: int | None = None
    event_invoke: EventInvokeConfig | None = None
    # qualifier -> (requested, when it was put); READY ``warm_delay`` seconds after the put.
    provisioned: dict[str, tuple[int, float]] = field(default_factory=dict)
    warm_delay: float = 30.0
    settings_writes: list[tuple[float, Action]] = field(default_factory=list)
    hooks_pass: bool = True
    # Seconds a hook takes to answer; it runs beside the reconciles, as the shell runs it.
    hook_delay: float = 0.0
    # (when, hook name, version, verdict) for every hook that ran to an answer.
    hook_runs: list[tuple[float, str, str, Verdict]] = field(default_factory=list)
    # Notifications: whether the rollout has any, and the outbox entries every target is done with.
    announce: bool = False
    announced: set[str] = field(default_factory=set)
    # Hooks started and not answered yet (name -> the action and when), and answers not yet handed over.
    _hooks_running: dict[str, tuple[RunHook, float]] = field(default_factory=dict)
    _hook_answers: list[HookAnswer] = field(default_factory=list)
    metric_verdict: Verdict = Verdict.SUCCESSFUL
    # (when, metric name, version, verdict, start of the measured period) for every measurement taken.
    measured: list[tuple[float, str, str, Verdict, float]] = field(default_factory=list)
    _measurements: dict[str, Measurement] = field(default_factory=dict)
    # How the canary fails next to stable in the periods read (see the module docstring).
    sequential: str = "same"
    requests: int = 10_000
    # (when, test name, canary version, the look) for every period read.
    looked: list[tuple[float, str, str, Look]] = field(default_factory=list)
    _looks: dict[str, SequentialLooks] = field(default_factory=dict)

    def look(self, start: float, period: int, weight: int) -> Look:
        """One period's counts as ``sequential`` says, for ``requests`` split by ``weight`` percent."""
        total = 0 if self.sequential == "silent" else self.requests
        canary = round(total * weight / 100)
        ratio = 20.0 if self.sequential == "worse" else 1.0
        failures = min(canary, round(canary * 0.02 * ratio))
        return Look(start, start + period, canary, failures, total - canary, round((total - canary) * 0.02))

    def measure(self) -> None:
        """Take the measurements and read the periods due now, as the shell does once per tick."""
        self._measurements = {}
        self._looks = {}
        record = self.record
        if record is None or record.canary is None:
            return
        for test, starts in due_tests(self.spec, record, self.now, time_scale=self.time_scale):
            assert record.stable is not None
            period = sequential_period(test, time_scale=self.time_scale)
            looks = tuple(self.look(start, period, record.weight) for start in starts)
            self._looks[test.name] = SequentialLooks(fingerprint(test), record.canary, record.stable, looks)
            self.looked += [(self.now, test.name, record.canary, look) for look in looks]
        for metric in due_metrics(self.spec, record, self.now, time_scale=self.time_scale):
            start, _ = window(self.now, period_of(metric, time_scale=self.time_scale))
            verdict = self.metric_verdict
            value = {Verdict.SUCCESSFUL: 0.0, Verdict.FAILED: 1e9}.get(verdict)
            self._measurements[metric.name] = Measurement(record.canary, self.now, start, value, 0.0)
            self.measured.append((self.now, metric.name, record.canary, verdict, start))

    def provisioned_view(self) -> dict[str, ProvisionedConfig]:
        view = {}
        for qualifier, (requested, put_at) in self.provisioned.items():
            ready = self.now - put_at >= self.warm_delay
            status = ProvisionedStatus.READY if ready else ProvisionedStatus.IN_PROGRESS
            view[qualifier] = ProvisionedConfig(qualifier, requested, requested if ready else 0, status)
        return view

    def is_warm(self, version: str) -> bool:
        config = self.provisioned_view().get(version)
        return config is not None and config.status is ProvisionedStatus.READY

    def observe(self, *, read: bool = True) -> Observed:
        poll = read or (self.record is not None and warming(self.spec, self.record))
        return Observed(
            alias_read=read,
            alias_exists=self.alias is not None,
            alias=self.alias if read else None,
            other_aliases=dict(self.side) if read else {},
            desired_version=self.published,
            versions=self.versions,
            alarms_in_alarm=self.alarms,
            alarm_instants=dict(self.alarm_instants),
            request=self.request,
            settings_read=read,
            reserved_concurrency=self.reserved,
            event_invoke=self.event_invoke,
            provisioned_read=poll,
            provisioned=self.provisioned_view() if poll else {},
            measurements=dict(self._measurements),
            looks=dict(self._looks),
            hook_answers=tuple(self._hook_answers),
            hooks_running={name: at for name, (_, at) in self._hooks_running.items()},
            announce=self.announce,
            announced=frozenset(self.announced),
        )

    def finish_hooks(self) -> None:
        """Hooks whose time is up answer (as ``hooks_pass`` says at that moment)."""
        for name, (action, started) in list(self._hooks_running.items()):
            if self.now - started < self.hook_delay:
                continue
            del self._hooks_running[name]
            verdict = Verdict.SUCCESSFUL if self.hooks_pass else Verdict.FAILED
            self.hook_runs.append((self.now, action.name, action.version, verdict))
            self._hook_answers.append(HookAnswer(name, action.version, action.attempt, verdict, "simulated", self.now))

    def ask(self, verb: Verb, by: str = "ops") -> None:
        self.requests_made += 1
        self.request = Request(id=f"r{self.requests_made}", verb=verb, at=self.now, by=by)

    def decide(self, *, read: bool = True) -> Decision:
        decision = decide(self.spec, self.record, self.observe(read=read), self.now, time_scale=self.time_scale)
        again = decision.read_alias or decision.read_provisioned
        if not read and (again or any(isinstance(a, UpdateAlias) for a in decision.actions)):
            # The shell reads the alias before any write (it needs the RevisionId) and decides again.
            decision = decide(self.spec, self.record, self.observe(read=True), self.now, time_scale=self.time_scale)
        return decision

    def tick(self, *, read: bool = True, crash: str | None = None) -> Decision:
        """One reconcile. ``crash``: "before-write" (after persisting the write-ahead record) or
        "before-confirm" (after the alias write, before persisting the confirmation)."""
        self.measure()
        self.finish_hooks()
        decision = self.decide(read=read)
        self.decisions.append(decision)
        if decision.record_changed:
            self.record = decision.record
        self._hook_answers = []  # handed over: the record has them (or the core ignored them)
        for action in decision.actions:
            if isinstance(action, PublishVersion):
                self.published = str(1 + max((int(v) for v in self.versions), default=0))
                self.versions[self.published] = VersionInfo(self.published, role="role")
                continue
            if isinstance(action, RunHook):
                if crash == "before-write":
                    self._hooks_running.clear()
                    return decision  # died while the hook ran: no answer recorded
                self._hooks_running.setdefault(action.name, (action, self.now))
                continue
            if not isinstance(action, UpdateAlias):
                self.apply_setting(action)
                continue
            if crash == "before-write":
                return decision
            write = action.write
            before = self.alias if write.alias == self.spec.alias else self.side.get(write.alias)
            self.writes.append(Write(self.now, action, before, decision.record))
            if write.alias == self.spec.alias:
                self.alias = write.routing
            else:
                self.side[write.alias] = write.routing
            if crash == "before-confirm":
                return decision
            assert self.record is not None
            self.record = confirm(self.record, self.now)
        return decision

    def apply_setting(self, action: Action) -> None:
        self.settings_writes.append((self.now, action))
        if isinstance(action, PutReservedConcurrency):
            self.reserved = action.value
        elif isinstance(action, PutEventInvokeConfig):
            self.event_invoke = action.config
        elif isinstance(action, PutProvisionedConcurrency):
            self.provisioned[action.qualifier] = (action.value, self.now)
        elif isinstance(action, DeleteProvisionedConcurrency):
            self.provisioned.pop(action.qualifier, None)

    def settle(self, *, ticks: int = 10) -> Decision:
        """Tick at the same instant until nothing more is written (multi-write sequences)."""
        decision = self.tick()
        for _ in range(ticks):
            if not decision.actions:
                return decision
            decision = self.tick()
        return decision

    def run_for(self, seconds: float, *, step: float = 1.0) -> Decision:
        end = self.now + seconds
        decision = self.tick()
        while self.now < end:
            self.now = min(end, self.now + step)
            decision = self.tick()
        return decision

    def with_spec(self, **changes: object) -> None:
        self.spec = dataclasses.replace(self.spec, **changes)  # type: ignore[arg-type]

    def disturb(self, kind: str, value: object) -> None:
        """Apply one random-history disturbance (``tests.unit.histories.DISTURBANCES``) to the world."""
        if kind == "alarm":
            self.alarms = frozenset({"errors"}) if value else frozenset()
        elif kind == "blip":
            # In ALARM at this instant and OK again by the next poll: only the history (or an event) saw it.
            self.alarm_instants["errors"] = self.now
        elif kind == "request":
            assert isinstance(value, Verb)
            self.ask(value)
        elif kind == "drift":
            self.alias = value  # type: ignore[assignment]
        elif kind == "version":
            self.with_spec(version=value)
        elif kind == "paused":
            self.with_spec(paused=value)
        elif kind == "hooks":
            self.hooks_pass = bool(value)
        elif kind == "measure":
            self.metric_verdict = value  # type: ignore[assignment]
        elif kind == "deliver":
            # Every notification target is done with what the outbox holds now.
            self.announced = {entry.id for entry in self.record.outbox} if self.record is not None else set()
        elif kind == "sequential":
            self.sequential = str(value)
        else:
            raise ValueError(f"unknown disturbance {kind!r}")


def api_spec(strategy: Strategy, *, version: str | None = "2", **fields: object) -> RolloutSpec:
    """The rollout the decide tests share: ``ns/api`` moving function ``api``'s alias ``prod`` to ``version``."""
    return RolloutSpec(
        namespace="ns",
        name="api",
        function_name="api",
        alias="prod",
        strategy=strategy,
        version=version,
        **fields,  # type: ignore[arg-type]
    )


def versions(*names: str, role: str = "role") -> dict[str, VersionInfo]:
    return {n: VersionInfo(n, role=role) for n in names}
