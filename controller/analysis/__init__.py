"""Analysis: the shell's side of "is the new version good?", behind ONE seam.

Every provider (CloudWatch alarms, metric queries with the sequential tests' counts, lifecycle hooks;
the next ones: alarm events) is asked ONCE per tick for everything due, for all rollouts at once, because batching
is what keeps the product cheap: one ``DescribeAlarms`` for every watched alarm, one ``GetMetricData``
for every measurement due. A provider gets the tick's ``Subject`` s (a rollout's spec and durable
record) and answers with ``Evidence`` per rollout: the facts the core judges (``decide`` turns them
into Successful / Failed / Inconclusive / Running; providers only report). ``Analysis`` asks every
provider and merges what they say, so the engine knows one seam, not one per kind of evidence. This
is Argo Rollouts' one interface and one folder per provider, shaped by batching.

A provider never raises for a bad answer of the thing it measures: a hook that times out is a Failed
answer with the reason, a GetMetricData that fails measures nothing this tick (the steps stay held).
The alarms provider does raise when it cannot read alarm states at all: no rollout may progress
without them, so the tick fails and is tried again.

Nothing here imports the runtime: the engine hands the records over in the subjects.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller.core.types import HookAnswer, Measurement, Record, SequentialLooks, Verdict
from controller.document.model import RolloutSpec


@dataclass(frozen=True)
class Result:
    """One provider's answer about one check (a hook): the verdict and why."""

    verdict: Verdict
    reason: str = ""


@dataclass(frozen=True)
class Subject:
    """What a provider is asked about: one rollout as it stands (``record`` None: never started)."""

    spec: RolloutSpec
    record: Record | None


@dataclass(frozen=True)
class Evidence:
    """What this tick's analysis found out about one rollout (each provider fills its own fields).

    Everything here is an input of ``decide``; the quiet skip compares it whole
    (``controller.runtime.reads.Inputs``), so a new kind of evidence can never be forgotten by it.
    """

    # Watched alarms in ALARM now, and watched alarms that do not exist.
    firing: frozenset[str] = frozenset()
    missing_alarms: frozenset[str] = frozenset()
    # Watched alarm -> the latest instant it was in ALARM, when that counts for the attempt in flight
    # (an ALARM between two polls, from the alarm history or a pushed event): ``Observed.alarm_instants``.
    alarm_instants: Mapping[str, float] = field(default_factory=dict)
    # Metric name -> the measurement taken this tick (only metrics that were due).
    measurements: Mapping[str, Measurement] = field(default_factory=dict)
    # Sequential test name -> the complete periods read this tick (only tests with periods due).
    looks: Mapping[str, SequentialLooks] = field(default_factory=dict)
    # Lifecycle hooks: answers not handed to the core yet, and hooks still running (name -> started).
    hook_answers: tuple[HookAnswer, ...] = ()
    hooks_running: Mapping[str, float] = field(default_factory=dict)


NO_EVIDENCE = Evidence()


def merged(first: Evidence, second: Evidence) -> Evidence:
    """``first`` with every field ``second`` sets (a field left at its default says nothing)."""
    changes = {
        f.name: getattr(second, f.name)
        for f in dataclasses.fields(Evidence)
        if getattr(second, f.name) != getattr(NO_EVIDENCE, f.name)
    }
    return dataclasses.replace(first, **changes) if changes else first


class Provider(Protocol):
    """One kind of analysis, asked once per tick for every subject."""

    async def measure(self, subjects: Sequence[Subject], *, now: float, wait: bool) -> Mapping[str, Evidence]:
        """Evidence by rollout key for the subjects it has something to say about.

        ``wait``: wait for slow answers however long they take (one-shot passes, tests) instead of
        leaving them to a later tick.
        """
        ...


class Analysis:
    """Every provider behind the one seam the engine uses."""

    def __init__(self, providers: Iterable[Provider]) -> None:
        self.providers = tuple(providers)

    async def measure(self, subjects: Sequence[Subject], *, now: float, wait: bool = False) -> dict[str, Evidence]:
        """Ask every provider at once (their calls overlap) and merge their evidence per rollout."""
        answers = await asyncio.gather(*(p.measure(subjects, now=now, wait=wait) for p in self.providers))
        evidence: dict[str, Evidence] = {}
        for answer in answers:
            for key, found in answer.items():
                evidence[key] = merged(evidence.get(key, NO_EVIDENCE), found)
        return evidence


__all__ = ["NO_EVIDENCE", "Analysis", "Evidence", "Provider", "Result", "Subject", "Verdict", "merged"]
