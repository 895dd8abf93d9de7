"""The demo's script: two GitOps commits, played against the real controller, with traffic flowing.

Act 1 commits version 2 (good): the controller shifts 10%, waits, 50%, waits, and promotes it; the
sequential test proves "no regression" on the way, so with ``promoteEarly`` a pause may end early.
Act 2 commits version 3 (bad): at 10% it fails half its calls (clients invoke the alias all along,
and the emulator makes Lambda's metrics from those invocations). That stays under the alias's error
alarm, but the sequential test compares version 3's errors with version 2's, period by period, and
the controller rolls it back with the evidence in its message (``RegressionDetected``) while the
alarms still say OK. The controller here is exactly what ``lambda-rollouts run --source DIR`` runs
(``Engine`` fed by ``FileSource.watch``); only its outputs are different (the demo's sink instead of
log lines).

Shaped for a clean stop at any instant: every task the story starts is stopped through an event and
awaited (never abandoned), so when ``play`` returns, whether finished or interrupted, nothing of it
is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.aws import AwsSettings, make_clients
from controller.core.reasons import Outcome, Reason
from controller.core.types import Event, HistoryEntry, Phase, Status
from controller.demo import world
from controller.demo.screen import DemoView
from controller.demo.traffic import LastSecond, TrafficSimulator
from controller.document.model import RolloutSpec
from controller.emulator.control import EmulatorControl
from controller.runtime.engine import Engine, EngineSettings
from controller.sources.files import FileSource

logger = logging.getLogger("controller.demo")

# At --speed 1: how long each canary pause lasts, and the breath between the two acts.
PAUSE_SECONDS = 15.0
# ... but never shorter than this: the sequential test judges one-second periods, which --speed does
# not shorten, and needs a few of them at 10% to prove version 3's regression before the pause ends.
MIN_PAUSE_SECONDS = 4.0
BREATHER_SECONDS = 3.0
# Clients invoke the alias at REQUESTS_PER_SECOND, sent in beats several times a second so that every
# one-second alarm period (ALARM_PERIOD_SCALE) holds a full second of invocations.
REQUESTS_PER_SECOND = 200.0
BEAT_SECONDS = 0.25
# How long an act may take beyond its plan before the story is declared off the rails.
ACT_SLACK_SECONDS = 30.0
STOP_GRACE_SECONDS = 8.0


@dataclass(frozen=True)
class Timings:
    """Scaled durations of one run (``--speed`` divides them)."""

    pause: float
    breather: float
    interval: float

    @classmethod
    def at(cls, speed: float) -> Timings:
        # The engine ticks often enough to see an alarm within a second, faster when sped up.
        return cls(
            pause=max(PAUSE_SECONDS / speed, MIN_PAUSE_SECONDS),
            breather=BREATHER_SECONDS / speed,
            interval=max(0.2, 1.0 / speed),
        )

    @property
    def plan(self) -> tuple[float, ...]:
        """What each step of the demo's canary may last (see ``world.rollout_document``)."""
        return (0.0, self.pause, 0.0, self.pause)


@dataclass
class AliasWriteCounter:
    """An ``ApiObserver``: counts the controller's successful alias writes, for the summary."""

    writes: int = 0

    def api_call(self, *, service: str, operation: str, outcome: str, seconds: float) -> None:
        if operation in ("UpdateAlias", "CreateAlias") and outcome == "ok":
            self.writes += 1

    def budget_wait(self, *, family: str, seconds: float) -> None:
        return None

    def api_retry(self, *, service: str, operation: str, reason: str) -> None:
        return None


@dataclass
class DemoSink:
    """The engine's ``StatusSink`` for the demo: feeds the view and remembers when things happened."""

    view: DemoView
    status: Status | None = None
    # (time, status) of every change, so the story can time its acts afterwards.
    changes: list[tuple[float, Status]] = field(default_factory=list)
    # Whether promoteEarly ended a pause (the summary says so).
    promoted_early: bool = False

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        self.status = self.view.status = status
        self.changes.append((time.time(), status))
        if previous is None or _split(previous) != _split(status):
            self.view.tell(f"alias {world.ALIAS}: {describe_split(status)}")

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        self.promoted_early = self.promoted_early or event.reason == Reason.PROMOTED_EARLY
        self.view.event(event)

    async def removed(self, *, spec: RolloutSpec) -> None:
        return None

    # Per-reconcile reports and alias-write notices: the screen shows their effects (status, alias)
    # instead. Typed loosely so this sink fits the protocol whatever those reports carry.
    async def reconciled(self, *, spec: RolloutSpec, report: Any) -> None:
        return None

    async def alias_written(self, *, spec: RolloutSpec, write: Any) -> None:
        return None

    def first(self, predicate: Callable[[Status], bool], *, since: float = 0.0) -> float | None:
        return next((at for at, status in self.changes if at >= since and predicate(status)), None)


def _split(status: Status) -> tuple[str | None, str | None, int]:
    return status.stable_version, status.canary_version, status.canary_weight


def describe_split(status: Status) -> str:
    """``90% on version 1, 10% on version 2``, or ``100% on version 2``."""
    if status.canary_version is None or status.canary_weight == 0:
        return f"100% on version {status.stable_version}"
    weight = status.canary_weight
    if weight >= 100:  # promoting: the final write makes the new version the primary
        return f"100% on version {status.canary_version}"
    return f"{100 - weight}% on version {status.stable_version}, {weight}% on version {status.canary_version}"


@dataclass(frozen=True)
class StoryResult:
    """How the story ended, from the controller's own statuses."""

    status: Status | None
    completed: bool  # False: an act ran out of time
    act1_seconds: float | None = None
    act2_seconds: float | None = None  # from version 3's first traffic to its rollback
    alias_writes: int = 0
    total_seconds: float = 0.0
    promoted_early: bool = False  # promoteEarly ended a pause of act 1

    @property
    def promoted(self) -> HistoryEntry | None:
        return self._history("2", Outcome.PROMOTED)

    @property
    def rolled_back(self) -> HistoryEntry | None:
        return self._history("3", Outcome.ROLLED_BACK)

    @property
    def evidence(self) -> str:
        """What the sequential test proved against version 3, as the rollback's message says it."""
        message = self.status.message if self.status else ""
        prefix = "regression detected by sequential test "
        return message.removeprefix(prefix).split(": version ")[0] if message.startswith(prefix) else ""

    @property
    def ok(self) -> bool:
        """Version 2 promoted, then version 3 rolled back by the sequential test, with its evidence."""
        status = self.status
        return (
            self.completed
            and status is not None
            and status.phase is Phase.ROLLED_BACK
            and status.reason == Reason.REGRESSION_DETECTED
            and status.stable_version == "2"
            and self.promoted is not None
            and self.rolled_back is not None
            and "canary " in self.evidence
        )

    def _history(self, version: str, outcome: str) -> HistoryEntry | None:
        history = self.status.history if self.status else ()
        return next((h for h in history if h.version == version and h.outcome == outcome), None)


class Story:
    """One run of the demo against an AWS endpoint (the in-process emulator or one given)."""

    def __init__(self, *, region: str, endpoint: str, directory: Path, view: DemoView, speed: float):
        self.region = region
        self.endpoint = endpoint
        self.clients = world.Clients.for_endpoint(endpoint, region=self.region)
        self.directory = directory
        self.view = view
        self.timings = Timings.at(speed)
        view.plan = self.timings.plan
        self.counter = AliasWriteCounter()
        self.sink = DemoSink(view)
        self.engine = Engine(
            make_clients(AwsSettings(region=region, endpoint_url=endpoint), observer=self.counter),
            settings=EngineSettings(interval=self.timings.interval),
            sinks=(self.sink,),
        )
        self.source = FileSource(directory, rescan_interval=5.0)

    async def play(self) -> StoryResult:
        started = time.time()
        self.view.begin(f"setting up {world.FUNCTION}: versions 1, 2 (good), 3 (bad), two alarms, prod on 1")
        control = EmulatorControl(self.endpoint, region=self.region)
        await asyncio.to_thread(control.configure, alarm_period_scale=world.ALARM_PERIOD_SCALE)
        await asyncio.to_thread(world.create_world, self.clients)
        stop = asyncio.Event()
        traffic = asyncio.create_task(self._traffic(stop))
        engine: asyncio.Task[None] | None = None
        try:
            self.view.begin("act 1: commit version 2, rolled out by canary")
            act1 = self._commit("2")
            await self.engine.apply(await asyncio.to_thread(self.source.scan))
            engine = asyncio.create_task(self.engine.run(stop=stop, updates=self.source.watch(stop)))
            if not await self._until(self._healthy_on("2"), budget=sum(self.timings.plan)):
                return self._result(started, completed=False)
            act1_seconds = time.time() - act1
            await asyncio.sleep(self.timings.breather)
            self.view.begin("act 2: commit version 3, which has a bug")
            act2 = self._commit("3")
            if not await self._until(self._ended_for("3"), budget=sum(self.timings.plan)):
                return self._result(started, completed=False, act1=act1_seconds)
            first_traffic = self.sink.first(lambda s: s.canary_version == "3" and s.canary_weight > 0, since=act2)
            act2_seconds = time.time() - first_traffic if first_traffic is not None else None
            return self._result(started, completed=True, act1=act1_seconds, act2=act2_seconds)
        finally:
            await self._stop(stop, traffic, engine)

    def _commit(self, version: str) -> float:
        world.commit(self.directory, version=version, pause_seconds=self.timings.pause)
        self.view.tell(f"git commit: {world.DOCUMENT} version: {version!r}")
        return time.time()

    async def _until(self, done: Callable[[], bool], *, budget: float) -> bool:
        """Poll the controller's status until ``done``; False when the act overruns its plan."""
        deadline = time.monotonic() + budget + ACT_SLACK_SECONDS
        while not done():
            if time.monotonic() > deadline:
                self.view.tell("the story did not unfold in time", warning=True)
                return False
            await asyncio.sleep(0.05)
        return True

    def _healthy_on(self, version: str) -> Callable[[], bool]:
        def check() -> bool:
            status = self.sink.status
            return status is not None and status.phase is Phase.HEALTHY and status.stable_version == version

        return check

    def _ended_for(self, version: str) -> Callable[[], bool]:
        """Version ``version``'s attempt is over: promoted, or taken out (rolled back, degraded)."""

        def check() -> bool:
            status = self.sink.status
            if status is None:
                return False
            if status.phase in (Phase.ROLLED_BACK, Phase.DEGRADED):
                return any(h.version == version for h in status.history)
            return self._healthy_on(version)()

        return check

    async def _traffic(self, stop: asyncio.Event) -> None:
        simulator = TrafficSimulator(
            endpoint=self.endpoint,
            function=world.FUNCTION,
            alias=world.ALIAS,
            profiles=world.PROFILES,
            region=self.region,
        )
        await asyncio.to_thread(simulator.apply_profiles)
        shown = LastSecond()
        last, owed = time.time(), 0.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BEAT_SECONDS):
                    await stop.wait()
            # As many requests as the time since the last beat holds, stamped now, as clients send them.
            now = time.time()
            owed += REQUESTS_PER_SECOND * (now - last)
            last, requests = now, int(owed)
            owed -= requests
            beat = await asyncio.to_thread(simulator.beat, requests=requests)
            alarms = await asyncio.to_thread(world.alarm_states, self.clients)
            second = shown.add(now, beat)
            self.view.traffic, self.view.errors = second.invocations, second.errors
            self.view.set_alarms(alarms)

    async def _stop(self, stop: asyncio.Event, *tasks: asyncio.Task[None] | None) -> None:
        """Stop the engine and the traffic and wait for them: a beat or a write in flight completes."""
        stop.set()
        running = [task for task in tasks if task is not None]
        done, pending = await asyncio.wait(running, timeout=STOP_GRACE_SECONDS) if running else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.warning("demo task ended with an error: %s", task.exception())

    def _result(
        self, started: float, *, completed: bool, act1: float | None = None, act2: float | None = None
    ) -> StoryResult:
        return StoryResult(
            status=self.sink.status,
            completed=completed,
            act1_seconds=act1,
            act2_seconds=act2,
            alias_writes=self.counter.writes,
            total_seconds=time.time() - started,
            promoted_early=self.sink.promoted_early,
        )


async def until_stopped(work: Awaitable[StoryResult], stop: asyncio.Event) -> StoryResult | None:
    """``work``'s result, or None when ``stop`` is set first (then ``work`` is cancelled and awaited)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


def summary(result: StoryResult) -> list[str]:
    """The closing words: what happened, how long it took, what it cost, and where to go next."""
    lines = ["What happened:"]
    if result.promoted is not None:
        took = f" in {result.act1_seconds:.0f}s" if result.act1_seconds is not None else ""
        early = " (a pause ended early: no regression proven)" if result.promoted_early else ""
        lines.append(f"  version 2 was rolled out by canary (10% -> 50% -> 100%) and promoted{took}{early}")
    else:
        lines.append("  version 2 was NOT promoted")
    if result.rolled_back is not None:
        after = f" {result.act2_seconds:.1f}s after its first traffic" if result.act2_seconds is not None else ""
        lines.append(f"  version 3 was rolled back{after}: {result.rolled_back.reason}")
        if result.evidence:
            lines.append(f"    sequential test {result.evidence}")
    else:
        lines.append("  version 3 was NOT rolled back")
    status = result.status
    if status is not None:
        lines.append(f"  prod now serves version {status.stable_version} at 100%; last message: {status.message}")
    lines.append(f"  {result.alias_writes} alias writes by the controller, {result.total_seconds:.0f}s in all")
    lines += [
        "",
        "The story played out as expected." if result.ok else "The story did NOT play out as expected.",
        "",
        "Run it for real (README.md):",
        "  'Use it on your AWS account': IAM policy (docs/iam.md), a GitOps directory (docs/gitops.md)",
        "  'Use it in Kubernetes': the operator and its resource (docs/kubernetes.md)",
        "  'Operate a rollout': lambda-rollouts get --watch, promote, abort, retry, pause, resume, undo",
        "  What this demo showed and how to read its screen: docs/demo.md",
    ]
    return lines
