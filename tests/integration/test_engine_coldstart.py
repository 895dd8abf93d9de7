"""Cold start: what a first shift costs in AWS calls, in which order they go, and what stays guaranteed.

Everything is read from the strict emulator's call log: the calls a first shift of N new rollouts
makes (bulk reads, no per-version configuration reads from the control plane), the order in which
the budget serves them (a pipeline per rollout: the first alias is written before the last one is
read), and the write-ahead guarantees (the record naming the pending write is persisted before each
alias write, the alias is re-read right before it and the write carries that read's RevisionId).
"""

from __future__ import annotations

from pathlib import Path

from controller.core.types import Phase
from controller.emulator import Emulator
from tests.integration.helpers import (
    EngineHarness,
    canary,
    rollout_document,
    seed_alias,
    write_document,
)


def _tag_writes(aws: Emulator, function: str) -> list[dict[str, str]]:
    return [
        dict(c.params.get("Tags") or {})
        for c in aws.calls()
        if c.operation == "TagResource" and str(c.params.get("Resource", "")).endswith(f":function:{function}")
    ]


def test_a_first_weight_and_the_pause_it_begins_go_in_one_confirming_record(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    seed_alias(aws, "fn-one")
    write_document(docs, rollout_document("fn-one", function="fn-one", version="2", strategy=canary(10, None)))
    harness.reload()

    harness.tick(1.0)

    # The tick that wrote the weight also recorded the pause it begins: no record write of its own later.
    assert harness.status("fn-one").phase is Phase.PAUSED
    assert len(_tag_writes(aws, "fn-one")) == 2  # write-ahead, then confirmed (and paused)
    aws.clear_calls()
    harness.tick(5.0)
    assert _tag_writes(aws, "fn-one") == []
    assert harness.status("fn-one").phase is Phase.PAUSED
