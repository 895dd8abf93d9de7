"""The notifier's side of the engine's ``Announcer`` seam (``controller.runtime.announcing``).

The engine hands over every outbox entry of a rollout's durable record after each reconcile
(``offer``); this turns it into a ``Transition`` (same id in every process), offers it to the
``Notifier`` once per process, and counts the targets it went to. When every one of them is done with
it, sent or given up on (``finished``, the notifier's ``on_finished``), the entry is ``done``: the next
decide takes it out of the record. An entry no target wants is done at once.

Invalid documents and orphaned rollouts are told from the status (``tell``), because nothing is
written for them: an invalid document changes nothing in AWS, not even the record. Those are
announced once per process: a restart may announce them again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable

from controller.core.announce import attempt_id
from controller.core.types import Phase, Record, Status, Trigger
from controller.document.model import RolloutSpec

from .config import NotificationConfig, subscribed
from .delivery import Notifier
from .transition import Transition

log = logging.getLogger(__name__)

_TOLD = {Phase.INVALID: Trigger.INVALID, Phase.ORPHANED: Trigger.ORPHANED}


class NotifierAnnouncer:
    """Outbox entries to transitions, and back: which entries every target is done with."""

    def __init__(
        self, notifier: Notifier, config: NotificationConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._notifier = notifier
        self._config = config
        self._clock = clock
        # transition id -> (rollout key, the targets not done with it yet)
        self._outstanding: dict[str, tuple[str, set[str]]] = {}
        self._done: dict[str, set[str]] = {}
        # (rollout key, opt-ins) already warned about: a name the config lacks is said once, not per tick.
        self._warned: set[tuple[str, tuple[str, ...]]] = set()

    def wants(self, spec: RolloutSpec) -> bool:
        return subscribed(self._config, namespace=spec.namespace, name=spec.name, opt_in=spec.notifications)

    def _check_opt_in(self, spec: RolloutSpec) -> None:
        """A ``spec.notifications`` name no target of the config has is a typo or a missing target: say so."""
        known = {target.name for target in self._config.targets}
        unknown = tuple(name for name in spec.notifications if name not in known)
        if not unknown or (spec.key, spec.notifications) in self._warned:
            return
        self._warned.add((spec.key, spec.notifications))
        log.warning(
            "rollout %s: spec.notifications names %s, which the notifications config (%s) does not have; known: %s",
            spec.key,
            ", ".join(unknown),
            self._config.source or "--notifications",
            ", ".join(sorted(known)) or "none",
        )

    def offer(self, spec: RolloutSpec, record: Record) -> None:
        self._check_opt_in(spec)
        done = self._done.get(spec.key, set())
        for entry in record.outbox:
            if entry.id in self._outstanding or entry.id in done:
                continue
            transition = Transition.announced(
                entry, namespace=spec.namespace, name=spec.name, function_name=spec.function_name, alias=spec.alias
            )
            targets = self._notifier.offer(transition, opt_in=spec.notifications)
            if targets:
                self._outstanding[entry.id] = (spec.key, set(targets))
            else:
                # No target wants it (or each had it from this process already): nothing to wait for.
                self._done.setdefault(spec.key, set()).add(entry.id)

    def finished(self, transition_id: str, target: str, outcome: str) -> None:
        """The notifier is done with ``transition_id`` for ``target`` (``outcome``: sent or failed)."""
        waiting = self._outstanding.get(transition_id)
        if waiting is None:
            return  # told directly (invalid, orphaned): no outbox entry waits for it
        key, targets = waiting
        targets.discard(target)
        if not targets:
            del self._outstanding[transition_id]
            self._done.setdefault(key, set()).add(transition_id)

    def done(self, key: str) -> frozenset[str]:
        return frozenset(self._done.get(key, ()))

    def forgotten(self, key: str, ids: Iterable[str]) -> None:
        left = self._done.get(key)
        if left is None:
            return
        left.difference_update(ids)
        if not left:
            del self._done[key]

    def tell(self, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        trigger = _TOLD.get(status.phase)
        if trigger is None or (
            previous is not None and previous.phase is status.phase and previous.errors == status.errors
        ):
            return
        if not self.wants(spec):
            return
        detail = "; ".join(status.errors) or status.message
        transition = Transition(
            namespace=spec.namespace,
            name=spec.name,
            function_name=spec.function_name,
            alias=spec.alias,
            trigger=trigger,
            attempt=attempt_id(version=status.canary_version or status.stable_version, started_at=None),
            at=self._clock(),
            version=status.canary_version,
            stable_version=status.stable_version,
            weight=status.canary_weight,
            step=status.current_step,
            steps=status.steps,
            phase=status.phase,
            reason=status.reason,
            message=detail[:240],
            # Each distinct problem is its own transition: a fixed and broken-again document is told again.
            discriminator=hashlib.sha256(detail.encode("utf-8")).hexdigest()[:8],
        )
        self._notifier.offer(transition, opt_in=spec.notifications)


__all__ = ["NotifierAnnouncer"]
