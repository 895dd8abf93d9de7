"""``lambda-rollouts validate PATH...``: check rollout documents the way the controller will.

Output contract (scripts and tests rely on it):

- stdout: one summary line per file read, e.g. ``examples/canary.yaml: 1 rollout valid`` or
  ``bad.yaml: 2 errors``; with ``-o json`` instead one JSON object ``{"valid", "files", "errors"}``.
- stderr: every error as ``FILE:LINE: path: message`` (text output only), in file and line order.
- exit status: 0 all valid, 1 any error in any document, 2 usage errors (no path, a missing path).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from controller.document.errors import SpecError
from controller.document.loader import LoadResult, load_paths


def add_arguments(parser: argparse.ArgumentParser, **_: Any) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="rollout files or directories (*.yaml, *.yml)")
    parser.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="text (default) or json on stdout"
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _summary(result: LoadResult, file: str, errors: list[SpecError]) -> str:
    if errors:
        return f"{file}: {_plural(len(errors), 'error')}"
    rollouts = result.rollouts_in(file)
    if not rollouts:
        return f"{file}: no LambdaRollout documents"
    return f"{file}: {_plural(len(rollouts), 'rollout')} valid"


def _as_json(result: LoadResult) -> dict[str, Any]:
    by_file = result.errors_by_file
    return {
        "valid": result.ok,
        "files": [
            {
                "file": file,
                "rollouts": [rollout.spec.key for rollout in result.rollouts_in(file)],
                "errors": len(by_file.get(file, [])),
            }
            for file in result.files
        ],
        "errors": [error.to_dict() for error in result.errors],
    }


def run(args: argparse.Namespace) -> int:
    missing = [path for path in args.paths if not Path(path).exists()]
    if missing:
        for path in missing:
            print(f"lambda-rollouts validate: {path}: no such file or directory", file=sys.stderr)
        return 2
    result = load_paths(args.paths)
    if args.output == "json":
        print(json.dumps(_as_json(result), indent=2))
    else:
        by_file = result.errors_by_file
        for file in result.files:
            print(_summary(result, file, by_file.get(file, [])))
        for error in result.errors:
            print(error, file=sys.stderr)
    return 0 if result.ok else 1
