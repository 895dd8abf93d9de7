"""``lambda-rollouts plan PATH...``: what the next reconcile would do to each rollout, changing nothing.

It loads the documents like ``validate``, reads AWS like a tick does (aliases, versions, alarms,
records) and runs the same decide step as ``run``, then prints the actions instead of making them.
Exit 1 when a document is invalid (its errors are printed, the valid rollouts are still planned) or
the controller would refuse a rollout (``--ownership-config`` is taken into account, as ``run`` does);
2 for a path that does not exist.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from controller.commands.options import add_ownership, add_time_scale, clients_from_args, ownership_from_args
from controller.core.types import Phase
from controller.document.loader import load_paths
from controller.errors import UsageError
from controller.observability.logs import configure_logging
from controller.observability.view import step_text
from controller.runtime.preview import Preview, describe_action, preview_all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="rollout documents or directories")
    add_ownership(parser)
    add_time_scale(parser)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    missing = [path for path in args.paths if not path.exists()]
    if missing:
        raise UsageError("\n".join(f"lambda-rollouts plan: {path}: no such file or directory" for path in missing))
    ownership = ownership_from_args(args)
    result = load_paths(list(args.paths))
    for error in result.errors:
        print(error, file=sys.stderr)
    specs = [loaded.spec for loaded in result.rollouts]
    aws = clients_from_args(args) if specs else None
    previews = (
        asyncio.run(preview_all(aws, specs, time_scale=args.time_scale, ownership=ownership)) if aws is not None else []
    )
    for preview in previews:
        print(format_preview(preview))
    return 1 if result.errors or any(is_bad(p) for p in previews) else 0


def is_bad(preview: Preview) -> bool:
    """An AWS error, or input the controller would refuse (missing function, version, alarm...)."""
    return preview.outcome is None or preview.outcome.decision.status.phase is Phase.INVALID


def format_preview(preview: Preview) -> str:
    spec = preview.spec
    lines = [f"{spec.key} (function {spec.function_name}, alias {spec.alias}):"]
    if preview.outcome is None:
        return "\n".join([*lines, f"  error: {preview.error}"])
    decision = preview.outcome.decision
    status = decision.status
    lines.append(f"  phase: {status.phase}  reason: {status.reason or '-'}  step: {step_text(status)}")
    if status.message:
        lines.append(f"  message: {status.message}")
    lines += [f"  error: {error}" for error in status.errors if error != status.message]
    lines += [f"  {line}" for line in preview.outlook]
    actions = [f"  - {describe_action(a, spec.function_name)}" for a in decision.actions]
    lines += actions or ["  - no AWS change"]
    if decision.record_changed and not decision.actions:
        lines.append("  - update the durable record on the function")
    if decision.requeue_after is not None:
        lines.append(f"  next look in {decision.requeue_after:.0f}s")
    return "\n".join(lines)
