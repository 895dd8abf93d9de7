"""The demo's screen, drawn on rich's recording console: what it shows must match the story's state."""

from __future__ import annotations

import io
import re

from rich.console import Console

from controller.core.types import Event, Phase, SequentialEvidence, Status
from controller.demo.screen import DemoView, PlainReporter, render
from controller.observability.view import step_text

STARTED = 1_000_000.0


def status(**changes: object) -> Status:
    fields: dict[str, object] = {
        "phase": Phase.PROGRESSING,
        "stable_version": "1",
        "canary_version": "2",
        "canary_weight": 10,
        "current_step": 2,  # counted from 1: the 15 s pause after the 10% step
        "steps": 5,
        "step_started_at": STARTED + 5,
        "message": "baking version 2 at 10%",
        "reason": "Baking",
    }
    fields.update(changes)
    return Status(**fields)  # type: ignore[arg-type]


def draw(view: DemoView, *, now: float) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(render(view, now=now))
    return console.export_text()


def test_the_screen_shows_the_split_the_pause_left_and_the_alarms() -> None:
    view = DemoView(started=STARTED, plan=(0.0, 15.0, 0.0, 15.0), act="act 1: version 2")
    view.status = status()
    view.traffic, view.errors = {"1": 180, "2": 20}, {"1": 0, "2": 3}
    view.set_alarms({"brand-api-error-rate-canary": "ALARM", "brand-api-p99-latency-canary": "OK"})

    text = draw(view, now=STARTED + 9)

    assert "act 1: version 2" in text
    assert re.search(r"Progressing\s+Baking", text)
    assert "stable 1: 90% | canary 2: 10%" in text
    assert "11s left of 15s" in text  # 15 s pause begun at +5, now +9
    assert re.search(r"2\s+20\s+3", text)  # version 2 served 20 calls, 3 failed
    assert re.search(r"brand-api-error-rate-canary\s+ALARM", text)
    assert re.search(r"brand-api-p99-latency-canary\s+OK", text)
    assert "alarm brand-api-error-rate-canary is ALARM" in text  # the change is told in the log


def test_a_weight_step_has_no_countdown_and_a_finished_rollout_no_split() -> None:
    view = DemoView(started=STARTED, plan=(0.0, 15.0, 0.0, 15.0))
    view.status = status(current_step=3, canary_weight=50)
    text = draw(view, now=STARTED + 9)
    assert f"step {step_text(view.status)}" in text  # the step as ``get --watch`` counts it
    assert "left of" not in text
    view.status = status(phase=Phase.HEALTHY, stable_version="2", canary_version=None, canary_weight=0)
    text = draw(view, now=STARTED + 40)
    assert "stable 2: 100%" in text
    assert "canary" not in text.split("traffic, last second")[0].split("steps")[1]


def test_plain_lines_carry_the_time_and_mark_bad_news() -> None:
    out = io.StringIO()
    view = DemoView(started=STARTED)
    view.listeners.append(PlainReporter(out))
    view.tell("git commit: version 3", now=STARTED + 7.5)
    view.event(Event("AlarmFired", "alarm brand-api-error-rate-canary in ALARM", warning=True))
    first, second = out.getvalue().splitlines()
    assert first == "[   7.5s]  git commit: version 3"
    assert second.endswith("! AlarmFired: alarm brand-api-error-rate-canary in ALARM")


def test_the_screen_shows_the_sequential_evidence_and_the_rollback_that_gives_it() -> None:
    view = DemoView(started=STARTED, plan=(0.0, 15.0, 0.0, 15.0), act="act 2: version 3")
    found = SequentialEvidence("errors", 6, 15, 0, 193, 4.4, -0.3, 2.0, "Regression", 2)
    view.status = status(
        phase=Phase.ROLLED_BACK,
        reason="RegressionDetected",
        message="regression detected by sequential test errors: canary 40.0% (6/15) vs stable 0.0% (0/193)",
        evidence=(found,),
    )
    view.event(Event("RegressionDetected", view.status.message, warning=True))
    text = draw(view, now=STARTED + 9)
    assert re.search(r"evidence\s+errors: canary 40\.0% \(6/15\) vs stable 0\.0% \(0/193\), e-values 10\^4\.4", text)
    assert "Regression" in text and "RegressionDetected: regression detected by sequential test errors" in text
