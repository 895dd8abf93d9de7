"""Analysis providers: the shell's side of "is the new version good?".

Every provider (lifecycle hooks today; alarms and metric queries share the shape) answers one
question about one rollout with a ``Result``: a ``Verdict`` (Successful, Failed, Inconclusive,
Running) and a human reason. The interface is deliberately small, in the spirit of Argo Rollouts'
metric providers: ``async def run(request) -> Result``, nothing else, so a provider is easy to test
on its own and the factory that picks one from the spec is a plain function.

Providers never raise for a bad answer: a timeout, a network error or a refusal is a ``Failed``
result with the reason, because the core must record *why* a version was rolled back. The core
decides what a verdict means (``controller.core.hooks``); providers only report it. ``Verdict``
lives in ``controller.core.types`` because the record stores it; it is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controller.core.types import Verdict


@dataclass(frozen=True)
class Result:
    """One provider's answer: the verdict and why."""

    verdict: Verdict
    reason: str = ""


class Provider(Protocol):
    """Runs one analysis for a rollout and reports its verdict; must not raise for a bad answer."""

    async def run(self, payload: dict[str, object]) -> Result:
        """Analyse with ``payload`` describing the rollout (function, alias, versions, ...)."""


__all__ = ["Provider", "Result", "Verdict"]
