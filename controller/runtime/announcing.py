"""The engine's seam to notifications: what it tells about transitions, and what it learns back.

The core writes each notable transition into the durable record's outbox (``controller.core.announce``)
in the same write that makes it. The engine hands every outbox entry it sees to an ``Announcer`` (the
notifier's side, ``controller.notify.announcer``), which sends beside the engine and reports when every
target is done with an entry (``done``); the next decide takes those out of the record. Transitions that
are never written down (an invalid document: nothing is written for bad input; an orphaned rollout)
are told directly (``tell``). Without notifications the engine has no announcer and the core adds no
outbox at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from controller.core.types import Record, Status
from controller.document.model import RolloutSpec


class Announcer(Protocol):
    def wants(self, spec: RolloutSpec) -> bool:
        """Whether any subscription could send this rollout's transitions (its outbox is kept then)."""
        ...

    def offer(self, spec: RolloutSpec, record: Record) -> None:
        """Send the outbox entries of ``record`` not sent yet by this process (never blocks)."""
        ...

    def done(self, key: str) -> frozenset[str]:
        """Ids of the outbox entries every target is done with, which the record may forget."""
        ...

    def forgotten(self, key: str, ids: Iterable[str]) -> None:
        """The record no longer holds ``ids`` (they were done with)."""
        ...

    def tell(self, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        """A status change that is announced without the record (Invalid, Orphaned)."""
        ...


__all__ = ["Announcer"]
