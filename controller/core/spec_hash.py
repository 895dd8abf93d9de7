"""A short, stable fingerprint of the parts of a spec that shape a rollout.

A failed version stays failed "under this spec hash": changing anything that would make the next
attempt different (the version or what to publish, the strategy, the analysis, the hooks, the
concurrency) gives a new hash and so a fresh chance, while edits that cannot change the outcome
(``paused``, ``progressDeadline``, labels) keep it. The hash must agree across processes and hosts
(it is stored in the record on the function), so it is sha256 over canonical JSON, never ``hash()``.

That JSON is the costliest part of a ``decide``, and a spec is immutable and decided on every tick,
so the hash is remembered per spec object (by identity, the object kept so its id cannot be reused):
the answer is the same, only computed once per spec.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from controller.document.model import RolloutSpec

HASH_LENGTH = 10
# Spec objects whose hash is remembered; past this many (far more than rollouts) it starts afresh.
_MEMO_LIMIT = 8192
_memo: dict[int, tuple[RolloutSpec, str]] = {}


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
    known = _memo.get(id(spec))
    if known is not None and known[0] is spec:
        return known[1]
    value = _digest(spec)
    if len(_memo) >= _MEMO_LIMIT:
        _memo.clear()
    _memo[id(spec)] = (spec, value)
    return value


def _digest(spec: RolloutSpec) -> str:
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
