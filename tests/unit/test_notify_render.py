"""What each target receives: transition ids, Slack Block Kit, the Teams Adaptive Card envelope, the
CloudEvent and its signature, the SNS subject. Structural asserts (the parts and their limits), not
whole-string equality, so wording can improve without rewriting the tests."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from typing import Any

import pytest

from controller.core.reasons import Reason
from controller.core.types import Phase
from controller.notify.links import GateLinks
from controller.notify.slack import render_slack
from controller.notify.sns import SUBJECT_LIMIT, subject
from controller.notify.teams import render_teams
from controller.notify.transition import Transition, Trigger, attempt_id
from controller.notify.webhook import render_cloudevent, signature

AT = 1767225600.0  # 2026-01-01T00:00:00Z
ROLLED_BACK = Transition(
    namespace="payments",
    name="brand-api",
    function_name="brand-api",
    alias="prod",
    trigger=Trigger.ROLLED_BACK,
    attempt=attempt_id(version="43", started_at=AT - 600.4),
    at=AT,
    version="43",
    stable_version="42",
    weight=25,
    step=2,
    steps=4,
    phase=Phase.ROLLED_BACK,
    reason=Reason.ALARM_FIRED,
    message="alarm brand-api-error-rate in ALARM: rolled back to 42 <at once> & marked failed",
)
WAITING = dataclasses.replace(
    ROLLED_BACK,
    trigger=Trigger.WAITING_FOR_PROMOTION,
    phase=Phase.PAUSED,
    reason=Reason.WAITING_FOR_PROMOTE,
    discriminator="4",
)
LINKS = GateLinks(
    promote="https://rollouts.example.com/v1/gate/p.sig",
    abort="https://rollouts.example.com/v1/gate/a.sig",
    expires_at=AT + 3600,
)


# ---- transitions ---------------------------------------------------------------------------------


def test_the_id_depends_on_rollout_attempt_trigger_and_discriminator_only() -> None:
    assert ROLLED_BACK.attempt == "43@1767224999"
    same = dataclasses.replace(ROLLED_BACK, at=AT + 99, message="other words", weight=0)
    assert same.id == ROLLED_BACK.id and len(ROLLED_BACK.id) == 32
    others = [
        dataclasses.replace(ROLLED_BACK, trigger=Trigger.PROMOTED),
        dataclasses.replace(ROLLED_BACK, attempt="43@1767225000"),
        dataclasses.replace(ROLLED_BACK, name="brand-api2"),
        dataclasses.replace(ROLLED_BACK, namespace="payment", name="sbrand-api"),
        dataclasses.replace(ROLLED_BACK, discriminator="2"),
    ]
    assert len({ROLLED_BACK.id, *(other.id for other in others)}) == 6
    assert attempt_id(version="43", started_at=None) == "43"


def test_the_json_form_is_camel_case_with_an_rfc3339_time() -> None:
    data = ROLLED_BACK.to_dict()
    assert data["rollout"] == {"namespace": "payments", "name": "brand-api"}
    assert (data["functionName"], data["stableVersion"], data["step"]) == ("brand-api", "42", {"index": 2, "count": 4})
    assert (data["trigger"], data["phase"], data["reason"], data["at"]) == (
        "RolledBack",
        "RolledBack",
        "AlarmFired",
        "2026-01-01T00:00:00Z",
    )
    json.dumps(data)  # plain JSON types only


# ---- Slack ---------------------------------------------------------------------------------------


def blocks_of(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [block for block in body["blocks"] if block["type"] == kind]


def test_slack_block_kit_header_fields_message_and_context() -> None:
    body = render_slack(ROLLED_BACK)
    assert body["text"] == "⛔ Rolled back: payments/brand-api"  # the notification's fallback
    (header,) = blocks_of(body, "header")
    assert header["text"] == {"type": "plain_text", "text": "⛔ Rolled back: payments/brand-api", "emoji": True}
    fields = [field["text"] for field in blocks_of(body, "section")[0]["fields"]]
    assert fields == [
        "*Rollout*\npayments/brand-api",
        "*Function*\nbrand-api:prod",
        "*Version*\n43",
        "*Stable*\n42",
        "*Traffic*\n25% on 43, step 2 of 4",
        "*Reason*\nAlarmFired",
    ]
    message = blocks_of(body, "section")[1]["text"]
    # Slack's control characters are escaped, so "<at once>" is not read as a link or mention.
    assert message["type"] == "mrkdwn" and "&lt;at once&gt; &amp; marked" in message["text"]
    (context,) = blocks_of(body, "context")
    assert context["elements"][0]["text"].startswith("attempt 43@1767224999 · 2026-01-01T00:00:00Z · id ")
    assert blocks_of(body, "actions") == []


def test_slack_buttons_for_the_links_and_the_limits() -> None:
    body = render_slack(WAITING, LINKS)
    (actions,) = blocks_of(body, "actions")
    promote, abort = actions["elements"]
    assert (promote["type"], promote["text"]["text"], promote["url"], promote["style"]) == (
        "button",
        "Promote",
        LINKS.promote,
        "primary",
    )
    assert (abort["text"]["text"], abort["url"], abort["style"]) == ("Abort", LINKS.abort, "danger")
    assert "links work once, until 2026-01-01T01:00:00Z" in blocks_of(body, "context")[0]["elements"][0]["text"]

    long = dataclasses.replace(ROLLED_BACK, name="x" * 200, message="m" * 5000, by="y" * 3000)
    body = render_slack(long)
    assert len(blocks_of(body, "header")[0]["text"]["text"]) == 150
    assert len(blocks_of(body, "section")[1]["text"]["text"]) == 3000
    assert all(len(field["text"]) <= 2000 for field in blocks_of(body, "section")[0]["fields"])
    assert len(blocks_of(body, "section")[0]["fields"]) <= 10


# ---- Teams ---------------------------------------------------------------------------------------


def test_teams_adaptive_card_in_the_message_envelope() -> None:
    body = render_teams(WAITING, LINKS)
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert (card["type"], card["version"], card["$schema"]) == (
        "AdaptiveCard",
        "1.4",
        "http://adaptivecards.io/schemas/adaptive-card.json",
    )
    title, facts, message, note = card["body"]
    assert (title["type"], title["text"], title["weight"], title["color"]) == (
        "TextBlock",
        "⏸️ Waiting for promotion: payments/brand-api",
        "Bolder",
        "Warning",
    )
    assert facts["type"] == "FactSet"
    assert {"title": "Function", "value": "brand-api:prod"} in facts["facts"]
    assert {"title": "Traffic", "value": "25% on 43, step 2 of 4"} in facts["facts"]
    assert message["text"] == WAITING.message and message["wrap"] is True
    assert note["isSubtle"] is True
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Promote", "url": LINKS.promote, "style": "positive"},
        {"type": "Action.OpenUrl", "title": "Abort", "url": LINKS.abort, "style": "destructive"},
    ]
    assert "actions" not in render_teams(ROLLED_BACK)["attachments"][0]["content"]
    assert render_teams(ROLLED_BACK)["attachments"][0]["content"]["body"][0]["color"] == "Attention"


# ---- CloudEvents and SNS -------------------------------------------------------------------------


def test_cloudevent_structured_mode() -> None:
    event = render_cloudevent(WAITING, LINKS)
    assert event["specversion"] == "1.0"
    assert event["id"] == WAITING.id
    assert event["source"] == "/lambda-rollouts/payments/brand-api"
    assert event["type"] == "dev.rollouts.lambda.waitingforpromotion"
    assert event["time"] == "2026-01-01T00:00:00Z"
    assert (event["subject"], event["datacontenttype"]) == ("brand-api:prod", "application/json")
    assert event["data"] == {
        **WAITING.to_dict(),
        "links": {"promote": LINKS.promote, "abort": LINKS.abort, "expiresAt": "2026-01-01T01:00:00Z"},
    }
    assert "links" not in render_cloudevent(ROLLED_BACK)["data"]
    assert render_cloudevent(ROLLED_BACK)["type"] == "dev.rollouts.lambda.rolledback"


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"1"}'
    expected = hmac.new(b"shh", b"1767225600." + body, hashlib.sha256).hexdigest()
    assert signature("shh", timestamp=1767225600, body=body) == f"sha256={expected}"
    assert signature("shh", timestamp=1767225601, body=body) != f"sha256={expected}"


@pytest.mark.parametrize("name", ["brand-api", "x" * 200, "naïve-名前"])
def test_sns_subject_is_ascii_one_line_and_under_100_characters(name: str) -> None:
    text = subject(dataclasses.replace(ROLLED_BACK, name=name))
    assert len(text) <= SUBJECT_LIMIT < 100
    assert text.isascii() and text.isprintable()
    assert text.startswith("[lambda-rollouts] Rolled back: payments/")
    if name == "brand-api":
        assert text == "[lambda-rollouts] Rolled back: payments/brand-api 43 (AlarmFired)"
