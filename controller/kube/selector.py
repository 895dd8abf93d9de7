"""``operator --selector``: a Kubernetes label selector over the LambdaRollout resources, for shards.

More rollouts than one replica should hold are split across several operators (Deployments), each
given a label selector (``shard=a``, ``team in (payments,search)``) and a Lease of its own: the
Kubernetes Lease elects the writer of each shard, so N shards are N independent elections, not a
scheduler of ours. A resource the selector does not match is not this operator's: it is neither shown
nor reconciled nor orphaned; a resource relabelled into another shard leaves this one as if deleted
(its record stays on the function) and the other shard's operator resumes it from its record.

The syntax is the apiserver's (``kubectl get -l``): requirements separated by commas, all of which
must hold: ``key=value`` (or ``==``), ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``, ``key``
(present), ``!key`` (absent). kopf watches every resource and the selector is applied to each event;
the operator's RBAC stays what it is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

_KEY = r"(?:[a-z0-9A-Z]([-a-z0-9A-Z.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?"
_VALUE = r"(?:[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?"
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(\s*([^)]*)\)\s*$")
_EQUALITY = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
_VALUE_ONLY = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True)
class Requirement:
    """One requirement: ``operator`` is ``in``, ``notin``, ``exists`` or ``absent``."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def holds(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "absent":
            return self.key not in labels
        if self.operator == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin: an absent label is not in the set


@dataclass(frozen=True)
class Selector:
    """A parsed label selector; ``text`` as given (it names the shard's Lease)."""

    text: str
    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str) -> Selector:
        """``ValueError`` naming the requirement that is not one of the selector's forms."""
        requirements = tuple(_requirement(part) for part in _split(text))
        if not requirements:
            raise ValueError("an empty selector selects everything; leave --selector out instead")
        return cls(text=text, requirements=requirements)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.holds(labels) for requirement in self.requirements)

    def lease_name(self, base: str) -> str:
        """``base`` with a digest of the selector: each shard's own Lease name, a valid object name."""
        return f"{base}-{hashlib.sha256(self.text.encode()).hexdigest()[:10]}"


def _split(text: str) -> list[str]:
    """The requirements, split at the commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _requirement(part: str) -> Requirement:
    found = _SET.match(part)
    if found is not None:
        values = frozenset(v.strip() for v in found.group(5).split(",") if v.strip())
        if not values or not all(_VALUE_ONLY.match(v) for v in values):
            raise ValueError(f"{part.strip()!r}: a set needs label values, e.g. key in (a,b)")
        return Requirement(found.group(1), found.group(4), values)
    found = _EQUALITY.match(part)
    if found is not None:
        operator = "notin" if found.group(4) == "!=" else "in"
        return Requirement(found.group(1), operator, frozenset({found.group(5)}))
    found = _EXISTS.match(part)
    if found is not None:
        return Requirement(found.group(2), "absent" if found.group(1) else "exists")
    raise ValueError(f"{part.strip()!r} is not a label requirement (key=value, key!=value, key in (a,b), key, !key)")


__all__ = ["Requirement", "Selector"]
