"""Ownership: which rollouts may move a function, judged purely from facts the shell gathered.

A ``LambdaRollout`` in namespace A must not be able to move team B's function. Three sources of
truth decide, in this order, and the first one that speaks has the last word:

1. **The owner tag on the function** (``lambda-rollouts/owner``, one namespace or several separated
   by spaces): only rollouts in those namespaces may manage it, whatever else says. It is set by
   whoever owns the function (IAM decides who may tag it), so it wins over the controller's config
   and is also the one way to hand a managed function over to another namespace.
2. **The managed marker**: a function the controller already manages for namespace A (the marker
   names ``namespace/name`` per alias) cannot be taken over by a rollout in namespace B.
3. **The ownership config** (``--ownership-config``): the rollout's namespace must list a pattern
   (``fnmatch`` glob) that matches the function's name or, for patterns starting with ``arn:``, its
   ARN.

With no owner tag, no other namespace's marker and no config, every rollout is allowed: a
single-tenant default. Multi-tenant clusters must set a config (or tag every function).

The shell reads the tags from its cache (no extra call per tick) and the config once at start; it
hands both over as ``Ownership`` in ``Observed`` and the ``not_owner`` rule refuses, before anything
else, with an Invalid status naming the namespace, the function and what would allow it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from controller.document.names import function_name_of

OWNER_TAG = "lambda-rollouts/owner"


@dataclass(frozen=True)
class Ownership:
    """The facts ownership is judged on, for one rollout's function.

    ``owner_tag``: the owner tag's value, None when the function has none. ``managers``: the
    ``namespace/name`` of every rollout the managed marker names on the function. ``allowed``: the
    config's patterns for the rollout's namespace; None when no config was given (an empty tuple:
    a config without this namespace). ``arn``: the function's unqualified ARN, for ``arn:`` patterns.
    """

    owner_tag: str | None = None
    managers: tuple[str, ...] = ()
    allowed: tuple[str, ...] | None = None
    arn: str = ""


def owner_namespaces(value: str) -> tuple[str, ...]:
    """The namespaces an owner tag names (space-separated; an empty tag names none)."""
    return tuple(value.split())


def matches(pattern: str, *, name: str, arn: str) -> bool:
    """Whether one allow-list pattern covers the function: ``arn:`` patterns match the ARN, others the name.

    Case-sensitive, like Lambda's names. A name pattern never matches an ARN, so ``pay-*`` cannot be
    satisfied by a rollout that spells its function as ``arn:...:function:pay-x`` of another account.
    """
    if pattern.startswith("arn:"):
        return bool(arn) and fnmatchcase(arn, pattern)
    return fnmatchcase(name, pattern)


def _namespaces(values: Iterable[str]) -> str:
    return ", ".join(sorted(set(values))) or "none"


def refusal(*, namespace: str, function: str, facts: Ownership) -> str | None:
    """Why a rollout in ``namespace`` may not move ``function`` (None: it may).

    The message names the namespace, the function and what would allow it.
    """
    name = function_name_of(function)
    hint = f"tag the function {OWNER_TAG}={namespace}"
    if facts.owner_tag is not None:
        owners = owner_namespaces(facts.owner_tag)
        if namespace in owners:
            return None
        return (
            f"function {name} is owned by namespace {_namespaces(owners)} ({OWNER_TAG} tag): a rollout in "
            f"namespace {namespace} may not move it; its owners may add {namespace} to that tag"
        )
    others = sorted(key for key in facts.managers if key.partition("/")[0] != namespace)
    if others:
        return (
            f"function {name} is already managed by {', '.join(others)}: a rollout in namespace {namespace} "
            f"may not take it over; to hand it over, {hint}"
        )
    if facts.allowed is None or any(matches(p, name=name, arn=facts.arn) for p in facts.allowed):
        return None
    listed = f"its patterns ({', '.join(facts.allowed)}) do not match" if facts.allowed else "it lists no pattern"
    return (
        f"function {name} is not allowed for namespace {namespace} by the ownership config: {listed}; "
        f"add a pattern for it under {namespace}, or {hint}"
    )


__all__ = ["OWNER_TAG", "Ownership", "matches", "owner_namespaces", "refusal"]
