"""A short, stable fingerprint of the parts of a spec that shape a rollout.

A failed version stays failed "under this spec hash": changing anything that would make the next
attempt different (the version or what to publish, the strategy, the analysis, the hooks, the
concurrency) gives a new hash and so a fresh chance, while edits that cannot change the outcome
(``paused``, ``progressDeadline``, labels) keep it. The hash must agree across processes and hosts
(it is stored in the record on the function), so it is sha256 over canonical JSON, never ``hash()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from controller.spec.model import RolloutSpec

HASH_LENGTH = 10


def _canonical(value: Any) -> Any:
    # Tag every struct with its type so that e.g. a linear and a canary strategy with equal fields
    # never collide; tuples become lists so JSON can carry them.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    return value


def spec_hash(spec: RolloutSpec) -> str:
    """``HASH_LENGTH`` hex characters of sha256 over what shapes the rollout of ``spec``."""
    shaping = {
        "version": spec.version,
        "publish": _canonical(spec.publish),
        "strategy": _canonical(spec.strategy),
        # The order alarms are listed in changes nothing about the analysis.
        "alarms": sorted(spec.analysis.alarms),
        "analysis": _canonical(dataclasses.replace(spec.analysis, alarms=())),
        "hooks": _canonical(spec.hooks),
        "concurrency": _canonical(spec.concurrency),
    }
    text = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]
