"""The tick reader: what one tick reads once for every rollout, and each rollout's ``Inputs``.

A tick's reads are shared by all rollouts, so their cost does not grow with idle ones: the request
inbox (``controller.runtime.inbox``: one scan for every request waiting) and the analysis
(``controller.analysis``: every provider asked once for every rollout: one ``DescribeAlarms``, one
batched ``GetMetricData``, the hooks' answers). The reader hands providers each rollout's durable
record as cached (``Subject``), so the analysis never needs the runtime.

``Inputs`` is everything ``decide`` gets for one rollout that is known before the rollout's own AWS
reads (aliases, versions, settings): its spec, its function's tags (the record is decoded from them,
with the owner tag and the managed marker), its pending request and the tick's evidence about it.
The observer builds ``Observed`` from it (``controller.runtime.observe``), and the quiet skip
(``controller.runtime.quiet``) compares it whole: whatever new input reaches ``decide`` through it is
also part of the comparison, so the skip can never forget one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.analysis import NO_EVIDENCE, Analysis, Evidence, Subject
from controller.core.codec import CodecError
from controller.core.types import Record, Request
from controller.document.model import RolloutSpec
from controller.runtime.announcing import Announcer
from controller.runtime.inbox import Inbox
from controller.runtime.records import RecordStore


@dataclass(frozen=True)
class Inputs:
    """One rollout's inputs of ``decide`` that the tick knows before reading anything of its own."""

    spec: RolloutSpec
    # The function's tags as cached (None: never read yet); the record is decoded from these.
    tags: Mapping[str, str] | None
    request: Request | None = None
    evidence: Evidence = NO_EVIDENCE
    # Notifications: whether the rollout has any, and the outbox entries every target is done with.
    announce: bool = False
    announced: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TickReads:
    """What one tick read once for every rollout."""

    # rollout key -> the control request waiting for it (the engine's inbox).
    requests: Mapping[str, Request] = field(default_factory=dict)
    # rollout key -> what the analysis found out about it this tick.
    evidence: Mapping[str, Evidence] = field(default_factory=dict)
    # Notifications (None: none configured): who has them, and which outbox entries are done with.
    announcer: Announcer | None = None

    def inputs(self, spec: RolloutSpec, tags: Mapping[str, str] | None) -> Inputs:
        """The rollout's inputs, with ``tags`` as they are now (copied: later writes do not change them)."""
        announcer = self.announcer
        return Inputs(
            spec=spec,
            tags=dict(tags) if tags is not None else None,
            request=self.requests.get(spec.key),
            evidence=self.evidence.get(spec.key, NO_EVIDENCE),
            announce=announcer is not None and announcer.wants(spec),
            announced=announcer.done(spec.key) if announcer is not None else frozenset(),
        )


class TickReader:
    """Makes a tick's shared reads for a set of rollouts."""

    def __init__(
        self, *, store: RecordStore, inbox: Inbox, analysis: Analysis, announcer: Announcer | None = None
    ) -> None:
        self._store = store
        self._inbox = inbox
        self._analysis = analysis
        self._announcer = announcer

    async def read(self, specs: Sequence[RolloutSpec], *, now: float, wait: bool = False) -> TickReads:
        """The requests and the evidence for ``specs``; ``wait``: for slow evidence too (one-shot passes)."""
        subjects = [Subject(spec, self.record(spec)) for spec in specs]
        return TickReads(
            requests=await self._inbox.pending(specs),
            evidence=await self._analysis.measure(subjects, now=now, wait=wait),
            announcer=self._announcer,
        )

    def record(self, spec: RolloutSpec) -> Record | None:
        """The rollout's durable record as cached (None: unknown yet, or unreadable: its reconcile says why)."""
        fn = self._store.known(spec.function_name)
        if fn is None:
            return None
        try:
            return self._store.record(fn, spec.alias)
        except CodecError:
            return None


__all__ = ["Inputs", "TickReader", "TickReads"]
