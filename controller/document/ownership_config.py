"""The ownership config (``--ownership-config FILE``): which functions each namespace's rollouts may move.

The file is a plain YAML mapping, namespace -> list of patterns::

    payments: ["payments-*", "arn:aws:lambda:eu-west-1:123456789012:function:pay-*"]
    search: [search-api]

A pattern is an ``fnmatch`` glob (``*``, ``?``, ``[...]``) over the function's name, or over its
unqualified ARN when it starts with ``arn:``. The rules it feeds are in ``controller.core.ownership``.

It is read once, when a daemon starts, with the same line-aware YAML reading as rollout documents
(``controller.document.documents``), and every problem comes back at once as a ``SpecError``
(``FILE:LINE: path: message``). A daemon given a bad file refuses to start (a usage error): running
with a half-understood allow-list would be either too strict or, worse, too lax.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.document.documents import config_document, config_text
from controller.document.errors import Path, SpecError, format_path
from controller.document.semantics import is_namespace

# What a function name pattern may contain: Lambda's name characters plus the glob's own.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-*?\[\]!]{1,140}")
# An ARN pattern names functions (not layers, not qualified versions or aliases): six colons.
_ARN_PATTERN = re.compile(r"arn:[^:\s]+:lambda:[^:\s]*:[^:\s]*:function:[A-Za-z0-9_\-*?\[\]!]+")


@dataclass(frozen=True)
class OwnershipPolicy:
    """The loaded config: the patterns of each namespace, and the file they came from (for messages)."""

    namespaces: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""

    def patterns_for(self, namespace: str) -> tuple[str, ...]:
        """The namespace's patterns; none for a namespace the config does not list (it is refused)."""
        return self.namespaces.get(namespace, ())


def load_ownership(file: str) -> tuple[OwnershipPolicy | None, list[SpecError]]:
    """Read and check ``file``; the policy only when it has no error."""
    text, errors = config_text(file)
    if text is None:
        return None, errors
    document, errors = config_document(text, file=file, expected="a mapping of namespace to function patterns")
    if document is None:
        return None, errors
    namespaces, problems = _check(document.data)
    errors += [SpecError(file, document.index.line_for(path), format_path(path), message) for path, message in problems]
    if errors:
        return None, sorted(set(errors), key=lambda e: (e.line, e.path, e.message))
    return OwnershipPolicy(namespaces=namespaces, source=file), []


def _check(data: Any) -> tuple[dict[str, tuple[str, ...]], list[tuple[Path, str]]]:
    if not isinstance(data, dict):
        return {}, [((), f"expected a mapping of namespace to function patterns, got {_kind(data)}")]
    if data.get("kind") == "LambdaRollout":
        return {}, [(("kind",), "this is a LambdaRollout document, not an ownership config")]
    namespaces: dict[str, tuple[str, ...]] = {}
    problems: list[tuple[Path, str]] = []
    for namespace, patterns in data.items():
        path: Path = (str(namespace),)
        if not is_namespace(namespace):
            problems.append((path, f"{namespace!r} is not a valid namespace (lowercase letters, digits and -)"))
        if not isinstance(patterns, list):
            problems.append((path, f"expected a list of function name or ARN patterns, got {_kind(patterns)}"))
            continue
        problems += [((*path, i), why) for i, p in enumerate(patterns) if (why := _pattern_problem(p)) is not None]
        namespaces[str(namespace)] = tuple(p for p in patterns if isinstance(p, str))
    return namespaces, problems


def _pattern_problem(pattern: Any) -> str | None:
    if not isinstance(pattern, str):
        return f"expected a function name or ARN pattern (a string), got {_kind(pattern)}"
    if pattern.startswith("arn:"):
        if not _ARN_PATTERN.fullmatch(pattern):
            return (
                f"{pattern!r} is not a function ARN pattern "
                "(arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME, unqualified; globs allowed)"
            )
        return None
    if not _NAME_PATTERN.fullmatch(pattern):
        return f"{pattern!r} is not a function name pattern (letters, digits, - and _, with * ? [...] globs)"
    return None


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)


__all__ = ["OwnershipPolicy", "load_ownership"]
