"""The words every target shares: a headline per trigger, the facts of a transition, a plain summary.

Slack, Teams and SNS lay a message out differently, but a person reading any of them should find
the same facts under the same names: rollout, function:alias, version, stable, traffic (weight and
step), reason, who asked. Keeping them here means one wording to review and one to document.
"""

from __future__ import annotations

from .transition import Transition, Trigger, rfc3339

__all__ = ["TONES", "facts", "footer", "headline", "truncate"]

_TITLES: dict[Trigger, tuple[str, str]] = {
    Trigger.STARTED: ("🚀", "Rollout started"),
    Trigger.WAITING_FOR_PROMOTION: ("⏸️", "Waiting for promotion"),
    Trigger.PROMOTED: ("✅", "Promoted"),
    Trigger.ROLLED_BACK: ("⛔", "Rolled back"),
    Trigger.ANALYSIS_INCONCLUSIVE: ("❔", "Analysis inconclusive"),
    Trigger.DRIFT_DETECTED: ("⚠️", "Drift detected"),
    Trigger.INVALID: ("❌", "Invalid document"),
    Trigger.ORPHANED: ("🔌", "Orphaned"),
}

#: How alarming a trigger is: good (it worked), attention (it failed), warning (someone must look), accent (news).
TONES: dict[Trigger, str] = {
    Trigger.STARTED: "accent",
    Trigger.WAITING_FOR_PROMOTION: "warning",
    Trigger.PROMOTED: "good",
    Trigger.ROLLED_BACK: "attention",
    Trigger.ANALYSIS_INCONCLUSIVE: "warning",
    Trigger.DRIFT_DETECTED: "warning",
    Trigger.INVALID: "attention",
    Trigger.ORPHANED: "warning",
}


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def headline(transition: Transition, *, emoji: bool = True) -> str:
    """``⛔ Rolled back: payments/brand-api``."""
    symbol, title = _TITLES[transition.trigger]
    text = f"{title}: {transition.rollout_key}"
    return f"{symbol} {text}" if emoji else text


def traffic(transition: Transition) -> str:
    """``25% on 43, step 2 of 4``; without a step or weight, what there is."""
    parts = []
    if transition.version is not None and transition.weight:
        parts.append(f"{transition.weight}% on {transition.version}")
    if transition.step:
        parts.append(f"step {transition.step} of {transition.steps}" if transition.steps else f"step {transition.step}")
    return ", ".join(parts)


def facts(transition: Transition) -> list[tuple[str, str]]:
    """The labelled facts of a transition, in display order; facts without a value are left out."""
    found = [
        ("Rollout", transition.rollout_key),
        ("Function", transition.target),
        ("Version", transition.version or ""),
        ("Stable", transition.stable_version or ""),
        ("Traffic", traffic(transition)),
        ("Reason", transition.reason),
        ("By", transition.by),
    ]
    return [(label, value) for label, value in found if value]


def footer(transition: Transition) -> str:
    """``attempt 43@1767225600 · 2026-01-01T12:00:00Z · id 3f2a…``: for a person correlating messages."""
    return f"attempt {transition.attempt} · {rfc3339(transition.at)} · id {transition.id[:12]}"
