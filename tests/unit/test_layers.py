"""The layers of the code, checked from its imports so that they stay true.

Imports only run down this list: commands -> kube / sources -> runtime -> analysis, notify,
observability, aws -> core -> document. And: only the Kubernetes wing's kopf wiring imports kopf;
only the AWS adapters (and the emulator and demo, which play AWS's side) import boto3 / botocore;
nothing imports a command module but the command line itself.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "controller"

# package -> the controller packages it may import (besides itself and the import-free modules).
ALLOWED: dict[str, set[str]] = {
    "document": set(),
    "core": {"document"},
    "aws": {"core", "document"},
    "analysis": {"aws", "core", "document"},
    "observability": {"core", "document"},
    "notify": {"aws", "core", "document", "observability"},
    "runtime": {"analysis", "aws", "core", "document", "observability"},
    "sources": {"runtime", "aws", "core", "document"},
    "kube": {"runtime", "analysis", "aws", "core", "document", "observability"},
    "emulator": {"core", "document"},
    "demo": {"emulator", "runtime", "sources", "aws", "analysis", "core", "document", "observability"},
    "commands": {
        "commands",
        "kube",
        "sources",
        "runtime",
        "analysis",
        "notify",
        "observability",
        "aws",
        "core",
        "document",
        "demo",
        "emulator",
    },
}
# Modules every layer may import: they import nothing of the controller themselves.
FREE = {"controller", "controller.errors"}


def imports() -> Iterator[tuple[str, str]]:
    """(importing module, imported module) for every import in the package."""
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                yield from ((module, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield module, node.module


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "controller" and len(parts) > 1 else None


def test_imports_only_run_down() -> None:
    wrong = []
    for module, imported in imports():
        here, there = layer(module), layer(imported)
        if here is None or there is None or imported in FREE or here == there or here not in ALLOWED:
            continue
        if there not in ALLOWED[here]:
            wrong.append(f"{module} imports {imported}")
    assert wrong == []


def test_the_core_imports_only_the_core_the_document_and_the_standard_library() -> None:
    # Pure: no I/O library, no third-party package, nothing of the shell.
    outside = sorted(
        f"{module} imports {imported}"
        for module, imported in imports()
        if layer(module) == "core"
        and not imported.startswith(("controller.core", "controller.document"))
        and imported.split(".")[0] not in sys.stdlib_module_names
    )
    assert outside == []


def test_only_the_kopf_wiring_imports_kopf() -> None:
    users = {module for module, imported in imports() if imported.split(".")[0] == "kopf"}
    assert users == {"controller.kube.wiring"}


def test_only_aws_and_the_aws_side_import_boto() -> None:
    users = {module for module, imported in imports() if imported.split(".")[0] in {"boto3", "botocore"}}
    assert {layer(module) for module in users} <= {"aws", "emulator", "demo"}, users


def test_nothing_imports_a_command_module_but_the_command_line() -> None:
    users = {
        module
        for module, imported in imports()
        if imported.startswith("controller.commands") and layer(module) not in {"commands", "cli"}
    }
    assert users == set()
