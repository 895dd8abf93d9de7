"""What a source wants managed, and the one way every source says it: ``desired_state``.

A source (a GitOps directory, the Kubernetes resources) hands the engine a ``DesiredState``. Both
build it with ``desired_state`` from the same kind of ``Entry`` per rollout, so the three cases that
used to be solved twice mean the same in both modes:

- **held**: a document that is invalid now is held where it is on its last valid spec, shown Invalid
  with its errors, and nothing in AWS is touched; one that was never valid but still says who it is
  (namespace and name) is held too, under a stand-in spec (``RolloutSpec.placeholder``), so that it
  is reported Invalid under its own name (status, metrics, alert) instead of disappearing;
- **duplicates**: two rollouts of one function alias would fight over it: both are held, each naming
  the other (``controller.document.loader.alias_conflicts``);
- **orphaned**: a rollout that is no longer in the state stops being managed; the engine makes it
  loud when it was mid-rollout (``controller.core.decide.orphan``).

Errors of documents too broken to name a rollout (YAML syntax) stay with their file (``unreadable``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.document.loader import Claim, Placement, alias_conflicts, written_placement
from controller.document.model import RolloutSpec


@dataclass(frozen=True)
class DesiredState:
    """One consistent view of a source.

    ``rollouts`` holds every rollout to manage by ``namespace/name``, including held ones (with the
    last valid spec they had, or a stand-in). ``held`` maps a rollout to the errors that hold it: it is
    shown as Invalid and nothing in AWS is touched until its document is valid again.
    ``orphan_errors`` are errors of documents that name no rollout (a YAML syntax error), by file.
    """

    rollouts: Mapping[str, RolloutSpec] = field(default_factory=dict)
    held: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    orphan_errors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # rollout key -> where it is declared (``FILE:LINE``, or the resource), for messages.
    origins: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """One rollout as a source sees it.

    ``spec`` is its (last) valid spec, None when it never had one; ``errors`` why it is held now
    (empty: valid); ``function_name`` / ``alias`` its identity as far as the document is readable, for
    the stand-in of one without a spec; ``origin`` where it is declared.
    """

    key: str
    spec: RolloutSpec | None
    errors: tuple[str, ...] = ()
    function_name: str = ""
    alias: str = ""
    origin: str = ""


def desired_state(
    entries: Iterable[Entry],
    *,
    unreadable: Mapping[str, tuple[str, ...]] | None = None,
    placement: Placement = written_placement,
) -> DesiredState:
    """The state the engine manages, from every rollout a source knows (see the module docstring).

    ``placement`` says where each rollout's function lives: one alias name in two accounts is no duplicate.
    """
    rollouts: dict[str, RolloutSpec] = {}
    held: dict[str, tuple[str, ...]] = {}
    origins: dict[str, str] = {}
    for entry in entries:
        spec = entry.spec or RolloutSpec.placeholder(entry.key, function_name=entry.function_name, alias=entry.alias)
        rollouts[entry.key] = spec
        origins[entry.key] = entry.origin or entry.key
        if entry.errors or entry.spec is None:
            held[entry.key] = entry.errors or ("document invalid",)
    acting = [key for key in rollouts if key not in held]
    claims = [
        Claim(key, rollouts[key].function_name, rollouts[key].alias, origins[key], placement(rollouts[key]))
        for key in acting
    ]
    for index, message in alias_conflicts(claims):
        key = acting[index]
        held[key] = (*held.get(key, ()), f"spec.alias: {message}")
    return DesiredState(rollouts=rollouts, held=held, orphan_errors=dict(unreadable or {}), origins=origins)


__all__ = ["DesiredState", "Entry", "desired_state"]
