"""Errors in rollout documents, each pinned to a file, a line and a path inside the document.

Every problem the loader finds becomes one ``SpecError`` so that all of them can be reported at
once, in the one format that the command line, the daemon's logs and ``.status.errors`` share:
``FILE:LINE: spec.path: message``. Line 0 means "no line" (a Kubernetes object, or a problem with
the file as a whole) and is left out of the text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# A location inside a document: mapping keys and sequence indexes, outermost first.
PathElement = str | int
Path = tuple[PathElement, ...]


def format_path(path: Iterable[PathElement]) -> str:
    """``("spec", "strategy", "canary", "steps", 2)`` -> ``spec.strategy.canary.steps[2]``."""
    text = ""
    for element in path:
        if isinstance(element, int):
            text += f"[{element}]"
        else:
            text += f".{element}" if text else str(element)
    return text


@dataclass(frozen=True, order=True)
class SpecError:
    """One problem: where it is (``file``, ``line``, ``path``) and what it is (``message``)."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, str | int]:
        """The JSON form used by ``validate -o json``."""
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}
