"""Reading YAML files into documents that remember the line of every key and list item.

Only ``yaml.safe_load`` semantics: a ``SafeLoader`` subclass composes each document into nodes
(which carry their source position), constructs plain Python data from them and then walks the
same nodes to index ``path -> line``. Errors can so name the line of ``spec.strategy.canary.steps[2]``
while the data handed on stays ordinary dicts and lists.

Two limits keep hostile input cheap: a size cap per file, and a cap on the nodes a document may
expand to (YAML aliases can make a small file describe an exponentially large tree).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from controller.document.errors import Path, SpecError, format_path

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 100_000


class DocumentError(Exception):
    """A problem that stops reading a file: ``line`` 0 when it concerns the file as a whole."""

    def __init__(self, line: int, path: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message


@dataclass
class LineIndex:
    """Where each path of one document starts. Unknown paths fall back to their nearest ancestor."""

    start: int = 0
    lines: dict[Path, int] = field(default_factory=dict)

    def line_for(self, path: Path) -> int:
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return self.start


@dataclass
class Document:
    data: Any
    index: LineIndex
    duplicate_keys: list[tuple[Path, int, int]]  # (path, line, first line) of keys given twice


class _LineLoader(yaml.SafeLoader):
    """``SafeLoader`` that keeps the composed nodes so their positions can be indexed."""


def read_text(path: str) -> str:
    """The file's text, refusing oversize and non-UTF-8 files with a ``DocumentError``."""
    with open(path, "rb") as handle:
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise DocumentError(0, "", f"file is larger than the limit of {MAX_FILE_BYTES} bytes (1 MiB)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DocumentError(0, "", f"file is not UTF-8 text (byte {error.start})") from None


def parse_documents(text: str) -> Iterator[Document]:
    """Each YAML document of ``text`` with its line index; a syntax error raises ``DocumentError``."""
    loader = _LineLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # an empty document between two ---
                continue
            # Before construction: merge keys (<<) are still visible, so overriding one is not a duplicate.
            duplicates = _duplicate_keys(node)
            data = loader.construct_document(node)
            index = LineIndex(start=node.start_mark.line + 1)
            _index(loader, node, (), index, budget=[MAX_NODES])
            yield Document(data=data, index=index, duplicate_keys=duplicates)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        if error.context and error.problem:
            # The context names where the construct began, often the line with the real mistake.
            started = f" started at line {error.context_mark.line + 1}" if error.context_mark else ""
            problem = f"{problem} ({error.context}{started})"
        raise DocumentError(mark.line + 1 if mark else 0, "yaml", problem) from None
    except yaml.YAMLError as error:
        raise DocumentError(0, "yaml", str(error)) from None
    finally:
        loader.dispose()


def config_text(file: str) -> tuple[str | None, list[SpecError]]:
    """A controller config file's text, or why it cannot be read (missing, too large, not UTF-8)."""
    try:
        return read_text(file), []
    except DocumentError as problem:
        return None, [SpecError(file, problem.line, problem.path, problem.message)]
    except OSError as problem:
        return None, [SpecError(file, 0, "", problem.strerror or str(problem))]


def config_document(text: str, *, file: str, expected: str) -> tuple[Document | None, list[SpecError]]:
    """The one YAML mapping a controller config file holds (``--accounts``, ``--ownership-config``,
    ``--notifications``), with the problems every such file can have: a YAML error, no document
    (``expected`` says what it should hold), duplicate keys, a second document. The document comes
    with its problems (the caller adds its own checks) unless there is nothing to check."""
    try:
        documents = list(parse_documents(text))
    except DocumentError as problem:
        return None, [SpecError(file, problem.line, problem.path, problem.message)]
    if not documents:
        return None, [SpecError(file, 0, "", f"empty: expected {expected}")]
    document = documents[0]
    errors = [
        SpecError(file, line, format_path(path), f"duplicate key (first given at line {first})")
        for path, line, first in document.duplicate_keys
    ]
    if len(documents) > 1:
        errors.append(
            SpecError(file, documents[1].index.start, "", "more than one YAML document: the config is one mapping")
        )
    return document, errors


def _index(
    loader: _LineLoader,
    node: yaml.Node,
    path: Path,
    index: LineIndex,
    *,
    budget: list[int],
) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise DocumentError(
            node.start_mark.line + 1, "yaml", f"document expands to more than {MAX_NODES} nodes (aliases?)"
        )
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = loader.construct_object(key_node)
            if not isinstance(key, str | int):
                key = str(key)
            child = (*path, key)
            # Later pairs win, as in the constructed data (merged keys come first, own keys after).
            index.lines[child] = key_node.start_mark.line + 1
            _index(loader, value_node, child, index, budget=budget)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            index.lines[(*path, position)] = item.start_mark.line + 1
            _index(loader, item, (*path, position), index, budget=budget)


def _duplicate_keys(root: yaml.Node) -> list[tuple[Path, int, int]]:
    """Keys given twice in one mapping, as ``(path, line, first line)``; YAML would keep the last silently.

    Each node is visited once (aliases share nodes), so this stays linear in the file's size.
    """
    found: list[tuple[Path, int, int]] = []
    seen: set[int] = set()
    pending: list[tuple[yaml.Node, Path]] = [(root, ())]
    while pending:
        node, path = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key_node.start_mark.line + 1
                if key_node.value in first:
                    found.append(((*path, key_node.value), line, first[key_node.value]))
                else:
                    first[key_node.value] = line
                pending.append((value_node, (*path, key_node.value)))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((item, (*path, position)) for position, item in enumerate(node.value))
    return sorted(found, key=lambda item: item[1])
