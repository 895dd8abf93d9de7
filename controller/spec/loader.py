"""Loading LambdaRollout documents from files (GitOps mode) and from Kubernetes objects.

One pipeline for both sources, so a document is judged the same wherever it comes from:
kind filter -> apiVersion -> the CRD schema -> the semantic rules -> ``RolloutSpec``. Every problem
is collected (nothing stops at the first error) as a ``SpecError`` naming file, line and path.

Files: ``load_paths`` takes files and directories (walked recursively for ``*.yaml`` / ``*.yml``,
hidden directories such as ``.git`` skipped, everything sorted so two runs read the same order),
reads multi-document YAML safely and skips documents of other kinds, so a directory may also hold
Kustomizations, Deployments and the like. Across all files it then refuses two rollouts of the same
function alias, or two with the same namespace/name, naming both places.

``LoadResult.rollouts`` holds every rollout that passed its own checks and conflicts with no other;
``errors_by_file`` tells a daemon which files are broken, so it can hold (not drop) what those files
described before.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from controller.spec.build import build_rollout
from controller.spec.documents import DocumentError, LineIndex, parse_documents, read_text
from controller.spec.errors import Path, SpecError, format_path
from controller.spec.model import RolloutSpec
from controller.spec.schema import API_GROUP, API_VERSION, KIND, schema_errors
from controller.spec.semantics import semantic_errors

API_VERSION_STRING = f"{API_GROUP}/{API_VERSION}"
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedRollout:
    """A valid rollout and where it was read: ``line`` is where its document starts (0: not a file)."""

    spec: RolloutSpec
    file: str
    line: int
    document: dict[str, Any]
    index: LineIndex = field(default_factory=LineIndex, compare=False, repr=False)

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line > 0 else self.file


@dataclass
class LoadResult:
    """Everything read from a set of paths: valid rollouts, every error, and the files looked at."""

    rollouts: list[LoadedRollout] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors_by_file(self) -> dict[str, list[SpecError]]:
        """The errors of each file that has any, in file order."""
        grouped: dict[str, list[SpecError]] = defaultdict(list)
        for error in self.errors:
            grouped[error.file].append(error)
        return dict(grouped)

    def rollouts_in(self, file: str) -> list[LoadedRollout]:
        return [rollout for rollout in self.rollouts if rollout.file == file]


# ---- one document ------------------------------------------------------------------------------------


def is_rollout_document(data: Any) -> bool:
    """Whether a YAML document claims to be a LambdaRollout (others are skipped, not errors)."""
    return isinstance(data, dict) and data.get("kind") == KIND


def check_document(
    document: Mapping[str, Any], *, file: str, index: LineIndex, default_namespace: str
) -> tuple[RolloutSpec | None, list[SpecError]]:
    """Every check of one LambdaRollout document; the spec only when there is no error."""

    def error(path: Path, message: str) -> SpecError:
        return SpecError(file, index.line_for(path), format_path(path), message)

    problems: list[tuple[Path, str]] = []
    api_version = document.get("apiVersion")
    if api_version != API_VERSION_STRING:
        problems.append((("apiVersion",), f"{api_version!r} is not supported; use {API_VERSION_STRING}"))
    # .status is the controller's output, not the user's input: never a reason to refuse the spec.
    semantic = semantic_errors(document)
    # A semantic rule says more than the schema rule it refines ("$LATEST is not an alias" beats
    # "does not match the alias pattern"), so at a path with both, only the semantic one is kept.
    refined = {path for path, _ in semantic}
    problems += [(path, message) for path, message in schema_errors(_without_status(document)) if path not in refined]
    problems += semantic
    errors = sorted({error(path, message) for path, message in problems}, key=_error_order)
    if errors:
        return None, errors
    return build_rollout(document, default_namespace=default_namespace), []


def _without_status(document: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "status"}


def _error_order(error: SpecError) -> tuple[int, str, str]:
    return (error.line, error.path, error.message)


def parse_rollout(
    obj: Mapping[str, Any], *, file: str = "<resource>", default_namespace: str = "default"
) -> tuple[RolloutSpec | None, list[SpecError]]:
    """Check a Kubernetes object (or any dict) as a LambdaRollout; errors carry no line (line 0)."""
    if not isinstance(obj, Mapping) or obj.get("kind") != KIND:
        kind = obj.get("kind") if isinstance(obj, Mapping) else type(obj).__name__
        return None, [SpecError(file, 0, "kind", f"{kind!r} is not {KIND}")]
    return check_document(obj, file=file, index=LineIndex(), default_namespace=default_namespace)


# ---- files -------------------------------------------------------------------------------------------


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[SpecError]]:
    """The files to read, in a stable order, plus an error for each path that does not exist.

    A file named explicitly is read whatever its suffix; a directory contributes its ``*.yaml`` and
    ``*.yml`` files, recursively, skipping hidden directories (``.git``, git-sync's worktrees).
    """
    files: list[str] = []
    errors: list[SpecError] = []
    for given in paths:
        path = FilePath(given)
        if path.is_dir():
            found = []
            for directory, subdirectories, names in os.walk(path):
                subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
                found += [FilePath(directory, name) for name in names if name.endswith(YAML_SUFFIXES)]
            files += sorted(candidate.as_posix() for candidate in found)
        elif path.is_file():
            files.append(path.as_posix())
        else:
            errors.append(SpecError(path.as_posix(), 0, "", "no such file or directory"))
    return list(dict.fromkeys(files)), errors


def load_file(file: str, *, default_namespace: str = "default") -> tuple[list[LoadedRollout], list[SpecError]]:
    """The valid rollouts of one file and the errors of the others (before cross-file checks)."""
    rollouts: list[LoadedRollout] = []
    errors: list[SpecError] = []
    try:
        for document in parse_documents(read_text(file)):
            errors += [
                SpecError(file, line, format_path(path), f"duplicate key (first given at line {first})")
                for path, line, first in document.duplicate_keys
            ]
            if not is_rollout_document(document.data):
                continue
            spec, problems = check_document(
                document.data, file=file, index=document.index, default_namespace=default_namespace
            )
            errors += problems
            if spec is not None and not document.duplicate_keys:
                rollouts.append(LoadedRollout(spec, file, document.index.start, document.data, document.index))
    except DocumentError as problem:
        errors.append(SpecError(file, problem.line, problem.path, problem.message))
    except OSError as problem:
        errors.append(SpecError(file, 0, "", problem.strerror or str(problem)))
    return rollouts, errors


def load_paths(paths: Iterable[str | os.PathLike[str]], *, default_namespace: str = "default") -> LoadResult:
    """Load every rollout under ``paths``; see the module docstring for what is checked."""
    files, errors = expand_paths(paths)
    result = LoadResult(files=files, errors=errors)
    for file in files:
        rollouts, problems = load_file(file, default_namespace=default_namespace)
        result.rollouts += rollouts
        result.errors += problems
    conflicts = _conflicts(result.rollouts)
    # Neither side of a conflict may act: which one the user meant is theirs to say.
    conflicted = {id(rollout) for rollout, _ in conflicts}
    result.rollouts = [rollout for rollout in result.rollouts if id(rollout) not in conflicted]
    result.errors += [error for _, error in conflicts]
    rank = {file: position for position, file in enumerate(files)}
    result.errors.sort(key=lambda error: (rank.get(error.file, -1), *_error_order(error)))
    return result


# ---- across documents --------------------------------------------------------------------------------

_NAME_PATH: Path = ("metadata", "name")
_ALIAS_PATH: Path = ("spec", "alias")


def function_key(function_name: str) -> str:
    """The function's name, whether it was given as a name or as an ARN (the part after ``:function:``)."""
    return function_name.rsplit(":function:", 1)[-1]


def _same_function(first: str, second: str) -> bool:
    # Two full ARNs are the same function only if equal; a bare name may be either of them.
    if ":function:" in first and ":function:" in second:
        return first == second
    return function_key(first) == function_key(second)


def check_duplicates(rollouts: Sequence[LoadedRollout]) -> list[SpecError]:
    """An error on each rollout that shares its namespace/name or its function alias with another.

    Both sides of a conflict get an error naming the other, so whichever file a user opens explains it.
    """
    return [error for _, error in _conflicts(rollouts)]


def _conflicts(rollouts: Sequence[LoadedRollout]) -> list[tuple[LoadedRollout, SpecError]]:
    errors: list[tuple[LoadedRollout, SpecError]] = []
    by_name: dict[str, list[LoadedRollout]] = defaultdict(list)
    by_alias: dict[tuple[str, str], list[LoadedRollout]] = defaultdict(list)
    for rollout in rollouts:
        by_name[rollout.spec.key].append(rollout)
        by_alias[(function_key(rollout.spec.function_name), rollout.spec.alias)].append(rollout)
    for group in by_name.values():
        for rollout in group:
            others = [other.location for other in group if other is not rollout]
            if others:
                message = f"{rollout.spec.key} is also defined at {', '.join(others)}"
                errors.append((rollout, _conflict(rollout, _NAME_PATH, message)))
    for group in by_alias.values():
        for rollout in group:
            others = [
                other.spec.key if other.location == other.spec.key else f"{other.spec.key} ({other.location})"
                for other in group
                if other is not rollout and _same_function(other.spec.function_name, rollout.spec.function_name)
            ]
            if others:
                target = f"{rollout.spec.function_name}:{rollout.spec.alias}"
                message = f"{target} is also rolled out by {', '.join(others)}"
                errors.append((rollout, _conflict(rollout, _ALIAS_PATH, message)))
    return errors


def _conflict(rollout: LoadedRollout, path: Path, message: str) -> SpecError:
    return SpecError(rollout.file, rollout.index.line_for(path), format_path(path), message)
