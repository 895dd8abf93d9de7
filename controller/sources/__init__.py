"""Where rollout documents come from: a GitOps directory (``files``) or Kubernetes (``kube``).

Every source hands the engine the same thing, a ``DesiredState``: the rollouts it wants managed,
and those it must hold where they are because their document is currently invalid. The engine
never knows which source it runs under.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.document.model import RolloutSpec


@dataclass(frozen=True)
class DesiredState:
    """One consistent view of a source.

    ``rollouts`` holds every rollout to manage by ``namespace/name``, including held ones (with the
    last valid spec they had). ``held`` maps a rollout to the errors that hold it: it is shown as
    Invalid and nothing in AWS is touched until its document is valid again. ``orphan_errors`` are
    errors of documents that never produced a rollout (invalid from the start), by file.
    """

    rollouts: Mapping[str, RolloutSpec] = field(default_factory=dict)
    held: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    orphan_errors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # rollout key -> where it is declared (``FILE:LINE``), for messages.
    origins: Mapping[str, str] = field(default_factory=dict)
