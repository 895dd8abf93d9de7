"""Microsoft Teams: an Adaptive Card in the message envelope that Teams incoming webhooks accept.

Teams' Workflows ("Post to a channel when a webhook request is received", which replaces the retired
Office 365 connectors) and the older incoming webhooks both take::

    {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                         "contentUrl": null, "content": <the card>}]}

The card (schema version 1.4, which Teams renders on desktop, web and mobile) holds the headline in
a bold, coloured ``TextBlock``, the facts in a ``FactSet``, the core's message, a subtle footer, and,
for a rollout waiting for promotion with links configured, ``Action.OpenUrl`` buttons Promote
(positive) and Abort (destructive) that open the gate's confirmation page.
"""

from __future__ import annotations

from typing import Any

from .links import GateLinks
from .text import TONES, facts, footer, headline
from .transition import Transition, rfc3339

__all__ = ["render_teams"]

CARD_VERSION = "1.4"
_COLORS = {"good": "Good", "attention": "Attention", "warning": "Warning", "accent": "Accent"}


def render_card(transition: Transition, links: GateLinks | None = None) -> dict[str, Any]:
    """The Adaptive Card for ``transition``."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": headline(transition),
            "size": "Large",
            "weight": "Bolder",
            "color": _COLORS[TONES[transition.trigger]],
            "wrap": True,
        },
        {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in facts(transition)]},
    ]
    if transition.message:
        body.append({"type": "TextBlock", "text": transition.message, "wrap": True})
    note = footer(transition)
    if links is not None:
        note += f" · links work once, until {rfc3339(links.expires_at)}"
    body.append({"type": "TextBlock", "text": note, "isSubtle": True, "size": "Small", "wrap": True})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if links is not None:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Promote", "url": links.promote, "style": "positive"},
            {"type": "Action.OpenUrl", "title": "Abort", "url": links.abort, "style": "destructive"},
        ]
    return card


def render_teams(transition: Transition, links: GateLinks | None = None) -> dict[str, Any]:
    """The webhook's JSON body: the card in Teams' message/attachments envelope."""
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": render_card(transition, links),
    }
    return {"type": "message", "attachments": [attachment]}
