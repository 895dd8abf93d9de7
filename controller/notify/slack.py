"""Slack: a Block Kit message to an incoming webhook.

Layout (Slack's limits in brackets, enforced by cutting text, never by failing the send):
a ``header`` block with the headline [150 characters of plain text]; a ``section`` with the facts
as ``fields`` [10 fields of 2000 characters]; a ``section`` with the core's message [3000]; a
``context`` line with the attempt, time and id; and, for a rollout waiting for promotion with links
configured, an ``actions`` block with a green Promote and a red Abort button [button text 75, URL
3000]. The top-level ``text`` is the fallback that notifications and screen readers show.

The buttons are URL buttons: Slack opens the link in the browser (the gate's confirmation page);
nothing is posted back to Slack, so the webhook needs no Slack app interactivity settings.
"""

from __future__ import annotations

from typing import Any

from .links import GateLinks
from .text import facts, footer, headline, truncate
from .transition import Transition, rfc3339

__all__ = ["render_slack"]

HEADER_LIMIT = 150
FIELD_LIMIT = 2000
SECTION_LIMIT = 3000
BUTTON_TEXT_LIMIT = 75


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters in mrkdwn text; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_slack(transition: Transition, links: GateLinks | None = None) -> dict[str, Any]:
    """The webhook's JSON body for ``transition``."""
    title = headline(transition)
    fields = [
        {"type": "mrkdwn", "text": truncate(f"*{label}*\n{mrkdwn_escape(value)}", FIELD_LIMIT)}
        for label, value in facts(transition)
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(title, HEADER_LIMIT), "emoji": True}},
        {"type": "section", "fields": fields[:10]},
    ]
    if transition.message:
        text = truncate(mrkdwn_escape(transition.message), SECTION_LIMIT)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    context = footer(transition)
    if links is not None:
        context += f" · links work once, until {rfc3339(links.expires_at)}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(context, SECTION_LIMIT)}]})
    if links is not None:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    _button("Promote", links.promote, style="primary", action="promote"),
                    _button("Abort", links.abort, style="danger", action="abort"),
                ],
            }
        )
    return {"text": title, "blocks": blocks}


def _button(text: str, url: str, *, style: str, action: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": truncate(text, BUTTON_TEXT_LIMIT)},
        "url": url,
        "style": style,
        "action_id": action,
    }
