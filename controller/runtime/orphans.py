"""Rollouts left mid-rollout by their document: kept visible, and loud, until the document is back.

A removed document stops management and leaves the alias as it is. When the new version still had
traffic (or a write was pending), nobody finishes or rolls it back any more, and that must not go
unnoticed: the durable record says Orphaned (``controller.core.decide.orphan``; one tag write,
retried every tick until it lands, leaders only), a warning Event is posted, the status and metrics
stay (``lambda_rollouts_rollout_orphaned``, alert ``LambdaRolloutOrphaned``). A controller that
starts and finds Orphaned records whose documents it does not have reports them the same way. When
the document comes back the rollout is managed again (the core resumes it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from controller.core.codec import CodecError
from controller.core.decide import orphan
from controller.core.reasons import Reason
from controller.core.status import record_status
from controller.core.types import Event, Phase, Record, Status
from controller.document.model import RolloutSpec
from controller.document.names import function_name_of
from controller.runtime.records import FunctionTags, RecordStore, managed_entries
from controller.runtime.reporter import Reporter
from controller.runtime.rollouts import Orphan, Rollout

logger = logging.getLogger("controller.engine")


class Orphans:
    """The orphaned rollouts of one engine, by key."""

    def __init__(self, store: RecordStore, reporter: Reporter, *, can_write: Callable[[], bool]) -> None:
        self._store = store
        self._reporter = reporter
        self._can_write = can_write
        self._orphans: dict[str, Orphan] = {}

    def all(self) -> dict[str, Orphan]:
        return dict(self._orphans)

    def status(self, key: str) -> Status | None:
        orphaned = self._orphans.get(key)
        return record_status(orphaned.record) if orphaned is not None else None

    def back(self, key: str) -> None:
        """The document of ``key`` is here again: no longer an orphan (the core resumes it)."""
        if self._orphans.pop(key, None) is not None:
            logger.warning("%s: document found again; the rollout is managed again", key)

    async def left(self, gone: Rollout) -> bool:
        """``gone`` left management: keep it visible as Orphaned (True), or let it go quietly (False)."""
        spec = gone.spec
        fn = self._store.known(spec.function_name)
        record = decoded(self._store, fn, spec.alias) if fn is not None else None
        marked = orphan(record, alias=spec.alias, why="its document is gone") if record is not None else None
        if marked is None:
            return False
        self._orphans[spec.key] = Orphan(spec=spec, record=marked, persisted=marked == record)
        gone.log.warning("%s", marked.message)
        sink = self._reporter.sink
        await sink.status_changed(spec=spec, status=record_status(marked), previous=gone.status)
        await sink.event(spec=spec, event=Event(Reason.DOCUMENT_REMOVED, marked.message, warning=True))
        return True

    async def persist(self) -> None:
        """Write the Orphaned records not written yet (leaders only); a failure is retried next tick."""
        for key, orphaned in list(self._orphans.items()):
            fn = self._store.known(orphaned.spec.function_name)
            if orphaned.persisted or fn is None or not self._can_write() or self._orphans.get(key) is not orphaned:
                continue  # written, unknown, not ours to write, or its document came back meanwhile
            try:
                await self._store.persist(fn, alias=orphaned.spec.alias, key=key, record=orphaned.record)
            except Exception as exc:
                logger.warning("%s: could not record that it is orphaned (retried next tick): %s", key, exc)
                continue
            orphaned.persisted = True

    async def adopt(self, managed: Callable[[str], bool]) -> None:
        """At start-up: records that say Orphaned and whose document is not (yet) here stay visible."""
        for fn in self._store.managed().values():
            for alias, key in managed_entries(fn.tags).items():
                if managed(key) or key in self._orphans:
                    continue
                found = decoded(self._store, fn, alias)
                if found is not None and found.phase is Phase.ORPHANED:
                    spec = RolloutSpec.placeholder(key, function_name=function_name_of(fn.arn), alias=alias)
                    self._orphans[key] = Orphan(spec=spec, record=found, persisted=True)
                    await self._reporter.sink.status_changed(spec=spec, status=record_status(found), previous=None)


def decoded(store: RecordStore, fn: FunctionTags, alias: str) -> Record | None:
    """The record as cached, None when there is none or it cannot be read (its reconcile says why)."""
    try:
        return store.record(fn, alias)
    except CodecError:
        return None


__all__ = ["Orphans", "decoded"]
