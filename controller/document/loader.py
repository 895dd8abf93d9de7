"""Loading LambdaRollout documents from files (GitOps mode) and from Kubernetes objects.

One pipeline for both sources, so a document is judged the same wherever it comes from:
kind filter -> apiVersion -> the CRD schema -> the semantic rules -> ``RolloutSpec``. Every problem
is collected (nothing stops at the first error) as a ``SpecError`` naming file, line and path.

Files: ``load_paths`` takes files and directories (walked recursively for ``*.yaml`` / ``*.yml``,
hidden directories such as ``.git`` skipped, everything sorted so two runs read the same order),
reads multi-document YAML safely and skips documents of other kinds, so a directory may also hold
Kustomizations, Deployments and the like. Across all files it then refuses two rollouts of the same
function alias, or two with the same namespace/name, naming both places.

A mistake must never make a rollout silently disappear, so "other kinds" are only documents that are
plainly someone else's: a document of our API group whose ``kind`` is missing or is not
``LambdaRollout``, or whose ``kind`` is a near miss of it (``LambdaRolout``), is an error; and a file
named explicitly (not found in a directory) that holds no rollout is an error too.

``LoadResult.rollouts`` holds every rollout that passed its own checks and conflicts with no other;
``errors_by_file`` tells a daemon which files are broken, so it can hold (not drop) what those files
described before; ``invalid`` names the rollouts whose documents are broken but still say who they
are (namespace and name), so that a rollout is reported Invalid under its own name, not as a file.
"""

from __future__ import annotations

import difflib
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from controller.document.build import build_rollout
from controller.document.documents import DocumentError, LineIndex, parse_documents, read_text
from controller.document.errors import Path, SpecError, format_path
from controller.document.model import RolloutSpec
from controller.document.names import function_name_of, same_function
from controller.document.schema import API_GROUP, API_VERSION, KIND, schema_errors
from controller.document.semantics import semantic_errors

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


@dataclass(frozen=True)
class InvalidRollout:
    """A rollout document with errors that still says who it is: its key, and its function and alias
    when they are readable (``""`` otherwise). ``spec`` is set when the document itself is valid
    and only conflicts with another one (two rollouts of one alias)."""

    key: str
    function_name: str
    alias: str
    file: str
    errors: tuple[SpecError, ...]
    spec: RolloutSpec | None = None


@dataclass
class LoadResult:
    """Everything read from a set of paths: valid rollouts, every error, and the files looked at."""

    rollouts: list[LoadedRollout] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    invalid: list[InvalidRollout] = field(default_factory=list)

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


def kind_error(data: Any) -> tuple[Path, str] | None:
    """Why a document that is not a LambdaRollout looks like a mistaken one (None: someone else's).

    Ours by its API group with a missing or other kind, or a kind that is a near miss of ours.
    """
    if not isinstance(data, dict) or data.get("kind") == KIND:
        return None
    kind, api_version = data.get("kind"), data.get("apiVersion")
    ours = isinstance(api_version, str) and api_version.split("/")[0] == API_GROUP
    if kind is None and ours:
        return ("kind",), f"missing: a {API_GROUP} document must be kind {KIND}"
    if not isinstance(kind, str):
        return (("kind",), f"{kind!r} is not {KIND}") if ours else None
    near = difflib.SequenceMatcher(None, kind.lower(), KIND.lower()).ratio() >= 0.8
    if ours or near:
        return ("kind",), f"{kind!r} is not {KIND}" + ("" if ours else " (a misspelling? this document is ignored)")
    return None


def claimed_identity(data: Any, *, default_namespace: str) -> tuple[str, str, str] | None:
    """(key, function, alias) of a rollout document as far as it is readable, None without a name."""
    if not isinstance(data, dict) or not is_rollout_document(data):
        return None
    metadata: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
    name, namespace = metadata.get("name"), metadata.get("namespace") or default_namespace
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        return None
    spec: dict[str, Any] = data["spec"] if isinstance(data.get("spec"), dict) else {}
    function, alias = spec.get("functionName"), spec.get("alias")
    return (
        f"{namespace}/{name}",
        function if isinstance(function, str) else "",
        alias if isinstance(alias, str) else "",
    )


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


#: Where a rollout's function lives, as a comparable text: two claims on one function alias conflict
#: only in the same place (one function name may exist in several accounts and regions).
Placement = Callable[[RolloutSpec], str]


def written_placement(spec: RolloutSpec) -> str:
    """The place ``spec.aws`` writes (role and region; empty: the controller's own). ``validate`` has no
    more to go by; a daemon compares the places it resolved (``controller.document.accounts``)."""
    aws = spec.aws
    return "" if aws is None else f"{aws.role_arn or ''} {aws.region or ''}"


@dataclass
class FileLoad:
    """One file's valid rollouts, its errors, and its broken rollouts that still say who they are."""

    rollouts: list[LoadedRollout] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    invalid: list[InvalidRollout] = field(default_factory=list)


def load_file(file: str, *, default_namespace: str = "default", text: str | None = None) -> FileLoad:
    """The valid rollouts of one file and the errors of the others (before cross-file checks).

    ``text``: the file's content when the caller read it already (``FileCache``).
    """
    loaded = FileLoad()
    try:
        for document in parse_documents(read_text(file) if text is None else text):
            duplicates = [
                SpecError(file, line, format_path(path), f"duplicate key (first given at line {first})")
                for path, line, first in document.duplicate_keys
            ]
            loaded.errors += duplicates
            mistaken = kind_error(document.data)
            if mistaken is not None:
                path, message = mistaken
                loaded.errors.append(SpecError(file, document.index.line_for(path), format_path(path), message))
                continue
            if not is_rollout_document(document.data):
                continue
            spec, problems = check_document(
                document.data, file=file, index=document.index, default_namespace=default_namespace
            )
            loaded.errors += problems
            if spec is not None and not document.duplicate_keys:
                loaded.rollouts.append(LoadedRollout(spec, file, document.index.start, document.data, document.index))
                continue
            identity = claimed_identity(document.data, default_namespace=default_namespace)
            if identity is not None:
                loaded.invalid.append(InvalidRollout(*identity, file=file, errors=tuple(duplicates + problems)))
    except DocumentError as problem:
        loaded.errors.append(SpecError(file, problem.line, problem.path, problem.message))
    except OSError as problem:
        loaded.errors.append(SpecError(file, 0, "", problem.strerror or str(problem)))
    return loaded


class FileCache:
    """Each file's load, kept while the file's text stays the same: a rescan parses only what changed.

    A daemon rescans its whole directory now and then, a safety net for lost file notifications; with a
    thousand documents, parsing and checking them all again cost about 1.2 s of CPU each time (40 ms
    per second at one rescan every 30 s), while reading their bytes costs a few milliseconds. The key
    is the text itself, not a timestamp: a rewrite within one tick of a coarse file-system clock is
    still seen. A cached load is handed out again as is, so unchanged documents keep the very same
    spec objects from one scan to the next.
    """

    def __init__(self) -> None:
        self._loads: dict[str, tuple[str, FileLoad]] = {}

    def load(self, file: str, *, default_namespace: str) -> FileLoad:
        try:
            text = read_text(file)
        except (DocumentError, OSError):
            return load_file(file, default_namespace=default_namespace)  # it says why, uncached
        seen = self._loads.get(file)
        if seen is not None and seen[0] == text:
            return seen[1]
        loaded = load_file(file, default_namespace=default_namespace, text=text)
        self._loads[file] = (text, loaded)
        return loaded

    def keep_only(self, files: Iterable[str]) -> None:
        """Forget the files no longer there."""
        kept = set(files)
        self._loads = {file: seen for file, seen in self._loads.items() if file in kept}


def load_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    default_namespace: str = "default",
    placement: Placement = written_placement,
    cache: FileCache | None = None,
) -> LoadResult:
    """Load every rollout under ``paths``; see the module docstring for what is checked.

    ``placement``: where each rollout's function lives, for the one-rollout-per-alias rule.
    ``cache``: a ``FileCache`` kept between calls, so that an unchanged file is not parsed again.
    """
    paths = list(paths)
    files, errors = expand_paths(paths)
    named = {FilePath(given).as_posix() for given in paths if FilePath(given).is_file()}
    result = LoadResult(files=files, errors=errors)
    if cache is not None:
        cache.keep_only(files)
    for file in files:
        if cache is not None:
            loaded = cache.load(file, default_namespace=default_namespace)
        else:
            loaded = load_file(file, default_namespace=default_namespace)
        result.rollouts += loaded.rollouts
        result.errors += loaded.errors
        result.invalid += loaded.invalid
        if file in named and not (loaded.rollouts or loaded.errors or loaded.invalid):
            # Asked for by name: a file that holds no rollout is a mistake (a wrong path, an empty file).
            result.errors.append(SpecError(file, 0, "", f"no {KIND} document in this file"))
    conflicts = _conflicts(result.rollouts, placement)
    # Neither side of a conflict may act: which one the user meant is theirs to say.
    conflicted = {id(rollout) for rollout, _ in conflicts}
    result.rollouts = [rollout for rollout in result.rollouts if id(rollout) not in conflicted]
    result.errors += [error for _, error in conflicts]
    for rollout, error in conflicts:
        spec = rollout.spec
        result.invalid.append(InvalidRollout(spec.key, spec.function_name, spec.alias, rollout.file, (error,), spec))
    rank = {file: position for position, file in enumerate(files)}
    result.errors.sort(key=lambda error: (rank.get(error.file, -1), *_error_order(error)))
    return result


# ---- across documents --------------------------------------------------------------------------------

_NAME_PATH: Path = ("metadata", "name")
_ALIAS_PATH: Path = ("spec", "alias")


@dataclass(frozen=True)
class Claim:
    """A rollout's claim on a function alias: who (``key``), what, and where it is declared; and where
    the function lives (``placement``)."""

    key: str
    function_name: str
    alias: str
    location: str
    placement: str = ""


def alias_conflicts(claims: Sequence[Claim]) -> list[tuple[int, str]]:
    """(index, message) for each claim on a function alias that another claim also makes.

    Two rollouts driving one alias would fight over it, so neither may act; both are told, naming the
    other, whichever document (file, resource) a user opens. Shared by the GitOps loader and the
    Kubernetes source, so a duplicate means the same in both modes.
    """
    found: list[tuple[int, str]] = []
    by_alias: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for index, claim in enumerate(claims):
        by_alias[(claim.placement, function_name_of(claim.function_name), claim.alias)].append(index)
    for group in by_alias.values():
        for index in group:
            claim = claims[index]
            others = [
                other.key if other.location == other.key else f"{other.key} ({other.location})"
                for other in (claims[i] for i in group if i != index)
                if same_function(other.function_name, claim.function_name)
            ]
            if others:
                found.append((index, f"{claim.function_name}:{claim.alias} is also rolled out by {', '.join(others)}"))
    return found


def _conflicts(rollouts: Sequence[LoadedRollout], placement: Placement) -> list[tuple[LoadedRollout, SpecError]]:
    """Two files declaring one namespace/name, or two rollouts of one function alias: an error on each."""
    errors: list[tuple[LoadedRollout, SpecError]] = []
    by_name: dict[str, list[LoadedRollout]] = defaultdict(list)
    for rollout in rollouts:
        by_name[rollout.spec.key].append(rollout)
    for group in by_name.values():
        for rollout in group:
            others = [other.location for other in group if other is not rollout]
            if others:
                message = f"{rollout.spec.key} is also defined at {', '.join(others)}"
                errors.append((rollout, _conflict(rollout, _NAME_PATH, message)))
    claims = [Claim(r.spec.key, r.spec.function_name, r.spec.alias, r.location, placement(r.spec)) for r in rollouts]
    for index, message in alias_conflicts(claims):
        errors.append((rollouts[index], _conflict(rollouts[index], _ALIAS_PATH, message)))
    return errors


def _conflict(rollout: LoadedRollout, path: Path, message: str) -> SpecError:
    return SpecError(rollout.file, rollout.index.line_for(path), format_path(path), message)
