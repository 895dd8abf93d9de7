"""docs/notifications.md shows exactly what the targets send: its example messages are rendered here
from the transitions they describe and compared whole, and its configs are checked like a real one.

A reader builds a receiver from those examples (a Slack workflow, a Teams flow, a CloudEvents
consumer), so a renderer that changes must change the page too. The links in the page are cut after
their first characters (a real token is a few hundred); they are compared cut the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from controller.core.reasons import Reason
from controller.core.types import Phase
from controller.notify.config import parse_notifications
from controller.notify.links import GateSigner
from controller.notify.slack import render_slack
from controller.notify.teams import render_teams
from controller.notify.transition import Transition, Trigger
from controller.notify.webhook import render_cloudevent

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text()
AT = 1767269400.0  # 2026-01-01T12:10:00Z, the time the page's examples show
ROLLED_BACK = Transition(
    namespace="payments",
    name="brand-api",
    function_name="brand-api",
    alias="prod",
    trigger=Trigger.ROLLED_BACK,
    attempt="43@1767268800",
    at=AT,
    version="43",
    stable_version="42",
    weight=25,
    step=3,
    steps=4,
    phase=Phase.ROLLED_BACK,
    reason=Reason.ALARM_FIRED,
    message=(
        "alarm brand-api-error-rate-canary in ALARM: traffic back to version 42 at 100%; version 43 will not be retried"
    ),
)
WAITING = Transition(
    namespace="payments",
    name="brand-api",
    function_name="brand-api",
    alias="prod",
    trigger=Trigger.WAITING_FOR_PROMOTION,
    attempt="43@1767268800",
    at=AT,
    version="43",
    stable_version="42",
    weight=25,
    step=4,
    steps=4,
    phase=Phase.PAUSED,
    reason=Reason.WAITING_FOR_PROMOTE,
    message="holding 25% on version 43 until promote",
    discriminator="4",
)
SIGNER = GateSigner(key=b"k" * 32, base_url="https://rollouts.example.com", ttl=3600)
_CUT = len("https://rollouts.example.com/v1/gate/eyJhIjoiNDNAMTc2")


def section(title: str) -> str:
    """The page's text under ``## title``, up to the next second-level heading."""
    return PAGE.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def json_blocks(text: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, re.DOTALL)]


def cut_links(value: Any) -> Any:
    """``value`` with every gate link cut as the page cuts them."""
    if isinstance(value, dict):
        return {key: cut_links(item) for key, item in value.items()}
    if isinstance(value, list):
        return [cut_links(item) for item in value]
    if isinstance(value, str) and "/v1/gate/" in value:
        return value[:_CUT] + "…"
    return value


def test_the_slack_examples_are_what_slack_receives() -> None:
    rolled_back, actions = json_blocks(section("Slack"))
    assert rolled_back == render_slack(ROLLED_BACK)
    waiting = render_slack(WAITING, SIGNER.links_for(WAITING, approver="payments-slack", now=AT))
    assert cut_links(waiting["blocks"][-1]) == actions


def test_the_teams_example_is_what_teams_receives() -> None:
    (waiting,) = json_blocks(section("Microsoft Teams"))
    links = SIGNER.links_for(WAITING, approver="payments-teams", now=AT)
    assert cut_links(render_teams(WAITING, links)) == waiting


def test_the_cloudevent_example_is_what_a_webhook_receives() -> None:
    event, *_ = json_blocks(section("Webhook (CloudEvents)"))
    assert event == render_cloudevent(ROLLED_BACK)


def test_the_configs_on_the_page_are_valid() -> None:
    configs = [block for block in re.findall(r"```yaml\n(.*?)\n```", PAGE, re.DOTALL) if block.startswith("targets:")]
    assert configs
    for text in configs:
        config, errors = parse_notifications(text, file="docs/notifications.md")
        assert [str(error) for error in errors] == [] and config is not None
