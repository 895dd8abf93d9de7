"""every reason a status can carry is a ``Reason`` and is documented in docs/behaviour.md.

An invalid document is shown the same way in both modes (GitOps files held by the engine, custom
resources that never were valid): phase Invalid, reason ``InvalidSpec``, the errors.
"""

from __future__ import annotations

import pathlib

from controller.core.reasons import Reason
from controller.core.types import Phase, Status, invalid_status

BEHAVIOUR = pathlib.Path(__file__).resolve().parents[2] / "docs" / "behaviour.md"


def test_every_reason_is_documented() -> None:
    text = BEHAVIOUR.read_text()
    assert [r.value for r in Reason if f"`{r.value}`" not in text] == []


def test_invalid_document_status_has_a_documented_reason_and_keeps_where_it_is() -> None:
    fresh = invalid_status(("f.yaml:3: spec.alias: required",))
    assert (fresh.phase, fresh.reason, fresh.errors) == (
        Phase.INVALID,
        Reason.INVALID_SPEC,
        ("f.yaml:3: spec.alias: required",),
    )
    running = Status(
        phase=Phase.PROGRESSING,
        stable_version="1",
        canary_version="2",
        canary_weight=10,
        current_step=1,
        steps=3,
        step_started_at=5.0,
        message="baking",
        reason="Baking",
    )
    held = invalid_status(("bad",), previous=running)
    assert (held.phase, held.reason, held.canary_weight, held.stable_version) == (Phase.INVALID, "InvalidSpec", 10, "1")
