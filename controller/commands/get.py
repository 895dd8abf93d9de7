"""``lambda-rollouts get [NAME] [-o table|json|yaml] [--source DIR]``: where each rollout stands.

The truth is the durable record on each function, so ``get`` needs no controller running: one
``GetResources`` scan of the managed marker returns every managed function with all its tags, and
each rollout's record is decoded from them. With ``--source`` it also shows the rollouts that have
no record yet (not started) or that the controller refuses (Invalid: bad document, missing function,
version or alarm), computed read-only the same way ``plan`` does.

Rollouts in other accounts and regions (``spec.aws``, ``--accounts``) are read there, one scan per
scope, with the role the controller would assume; a scope that cannot be read shows its rollouts
Invalid ``CredentialsUnavailable`` with AWS's words, as the controller does, and the others as usual.

``get NAME --watch`` follows one rollout live (``controller.commands.watch``); the table is drawn
with rich on a terminal and as plain aligned columns otherwise, so scripts can still cut it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from controller.aws import AwsClients, AwsSettings
from controller.aws.assume import session_name
from controller.aws.errors import AwsError
from controller.commands.options import (
    accounts_from_args,
    add_accounts,
    add_ownership,
    add_time_scale,
    aws_settings,
    clients_from_args,
    ownership_from_args,
)
from controller.commands.rollouts import RolloutNotFound, managed_rollouts, matches
from controller.commands.watch import Watcher, watch
from controller.core.codec import CodecError
from controller.core.reasons import Reason
from controller.core.status import evidence_fields, record_status
from controller.core.types import HistoryEntry, Phase, Record, SequentialEvidence, Status
from controller.document.accounts import AccountsConfig, Scope
from controller.document.ownership_config import OwnershipPolicy
from controller.observability.logs import configure_logging
from controller.observability.prometheus import Metrics
from controller.observability.view import PHASE_STYLES
from controller.runtime.desired import DesiredState
from controller.runtime.preview import Preview, preview_all
from controller.runtime.scopes import ClientsFactory, Scopes, partition
from controller.sources.files import FileSource

COLUMNS = ("NAME", "FUNCTION", "ALIAS", "PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "MESSAGE")


@dataclass(frozen=True)
class Row:
    name: str
    function: str
    alias: str
    phase: str
    stable: str | None = None
    canary: str | None = None
    weight: int = 0
    step: int = 0  # the step under way, from 1 (``controller.core.status``)
    steps: int = 0  # 0: unknown (an old record, without the document)
    message: str = ""
    reason: str = ""
    errors: tuple[str, ...] = ()
    # Provisioned concurrency of the new version while it warms: "allocated/requested".
    warmup: str = ""
    # The last few attempts (outcome, reason, who asked): in -o json|yaml, not in the table.
    history: tuple[HistoryEntry, ...] = ()
    # The sequential tests of the attempt in flight (the table's message ends with them too).
    evidence: tuple[SequentialEvidence, ...] = ()

    def cells(self) -> tuple[str, ...]:
        step = f"{self.step}/{self.steps}" if self.steps else str(self.step)
        message = self.message
        if self.errors:
            # The first error says what to fix; -o json|yaml and --watch list every one.
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            message = self.errors[0] + more
        weight = f"{self.weight}%" if self.canary else "-"
        if self.warmup:
            weight = f"{weight} (warming {self.warmup})"
        return (
            self.name,
            self.function,
            self.alias,
            self.phase,
            self.stable or "-",
            self.canary or "-",
            weight,
            step,
            message,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="one rollout: NAME or NAMESPACE/NAME")
    parser.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    parser.add_argument(
        "--source",
        type=Path,
        help="the rollout documents: also show rollouts not started or Invalid; with --watch, the plan and alarms",
    )
    parser.add_argument("-w", "--watch", action="store_true", help="follow NAME live until Ctrl-C")
    parser.add_argument(
        "--until-done",
        action="store_true",
        help="with --watch: exit 0 once Healthy on the desired version, 1 once RolledBack or Degraded",
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    parser.add_argument("--timeout", type=float, default=None, help="with --until-done: give up (exit 1) after S s")
    add_ownership(parser)
    add_accounts(parser)
    add_time_scale(parser)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    if args.watch or args.until_done:
        return run_watch(args)
    ownership, accounts = ownership_from_args(args), accounts_from_args(args)
    rows = asyncio.run(
        collect(
            clients_from_args(args),
            source=args.source,
            time_scale=args.time_scale,
            ownership=ownership,
            accounts=accounts,
            settings=aws_settings(args),
        )
    )
    if args.name:
        rows = [r for r in rows if matches(r.name, args.name)]
        if not rows:
            print(f"rollout {args.name} not found", file=sys.stderr)
            return 1
    if args.output == "table" and sys.stdout.isatty():
        Console().print(rich_table(rows))
    else:
        print(render(rows, args.output))
    return 0


def run_watch(args: argparse.Namespace) -> int:
    if not args.name:
        print("--watch needs a rollout NAME", file=sys.stderr)
        return 2
    desired = FileSource(args.source).scan() if args.source is not None else None
    watcher = Watcher(
        clients_from_args(args),
        name=args.name,
        specs={k: v for k, v in desired.rollouts.items() if k not in desired.held} if desired else None,
        held=desired.held if desired else {},
        time_scale=args.time_scale,
    )
    console = Console()
    try:
        return asyncio.run(
            watch(
                watcher,
                console=console,
                live=console.is_terminal,
                interval=args.interval,
                until_done=args.until_done,
                timeout=args.timeout,
            )
        )
    except RolloutNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def collect(
    aws: AwsClients,
    *,
    source: Path | None,
    time_scale: float = 1.0,
    ownership: OwnershipPolicy | None = None,
    accounts: AccountsConfig | None = None,
    settings: AwsSettings | None = None,
) -> list[Row]:
    """Every rollout's row: one scan per scope (the controller's own, ``--accounts``'s, the documents')."""
    scopes = Scopes(region=aws.region, accounts=accounts)
    desired = await asyncio.to_thread(FileSource(source, placement=scopes.placement).scan) if source else None
    parts = partition(desired, scopes=scopes) if desired is not None else {}
    factory = ClientsFactory(
        own=aws,
        settings=settings or AwsSettings(region=aws.region),
        metrics=Metrics(),
        session_name=session_name("get"),
    )
    rows: dict[str, Row] = {}
    own = Scope(region=aws.region)
    for scope in dict.fromkeys([*scopes.always(), *parts]):
        part = parts.get(scope)
        try:
            clients = await factory.clients(scope)
            recorded = {row.name: row for row in await rows_from_records(clients)}
        except AwsError as exc:
            if scope == own:
                raise  # the caller's own credentials: the one-line error of every verb, exit 1
            why = f"{exc.code}: {exc.message}" if exc.message else exc.code
            if part is None or not part.rollouts:
                print(f"warning: cannot read the rollouts of {scope}: {why}", file=sys.stderr)
            for key, spec in (part.rollouts if part is not None else {}).items():
                rows[key] = Row(
                    name=key,
                    function=spec.function_name or "-",
                    alias=spec.alias or "-",
                    phase=str(Phase.INVALID),
                    reason=Reason.CREDENTIALS_UNAVAILABLE,
                    errors=(why,),
                )
            continue
        rows.update(recorded)
        if part is not None:
            found = await rows_from_source(clients, part, recorded, time_scale=time_scale, ownership=ownership)
            rows.update({row.name: row for row in found})
    if desired is not None and not parts:  # only unreadable files: no scope to show them with
        rows.update({file: _invalid_file_row(file, errors) for file, errors in desired.orphan_errors.items()})
    return sorted(rows.values(), key=lambda r: r.name)


async def rows_from_records(aws: AwsClients) -> list[Row]:
    """Every rollout that has a record, from ONE scan of the managed marker."""
    rows = []
    for rollout in await managed_rollouts(aws):
        base = Row(name=rollout.key, function=rollout.function, alias=rollout.alias, phase="Unknown")
        try:
            record = rollout.record()
        except CodecError as exc:
            rows.append(dataclasses.replace(base, errors=(f"unreadable record: {exc}",)))
            continue
        if record is not None:
            rows.append(row_from_record(base, record))
    return rows


async def rows_from_source(
    aws: AwsClients,
    desired: DesiredState,
    recorded: dict[str, Row],
    *,
    time_scale: float,
    ownership: OwnershipPolicy | None = None,
) -> list[Row]:
    """Rows for the source's rollouts that are Invalid (under their own name) or have no record yet;
    the controller's verdict on each, computed read-only as ``run`` would (``--ownership-config`` too)."""
    rows = [_invalid_file_row(file, errors) for file, errors in desired.orphan_errors.items()]
    for key, errors in desired.held.items():
        spec = desired.rollouts[key]
        base = recorded.get(key) or Row(name=key, function=spec.function_name or "-", alias=spec.alias or "-", phase="")
        rows.append(dataclasses.replace(base, phase=str(Phase.INVALID), reason=Reason.INVALID_SPEC, errors=errors))
    live = [spec for key, spec in desired.rollouts.items() if key not in desired.held]
    for preview in await preview_all(aws, live, time_scale=time_scale, ownership=ownership):
        row = row_from_preview(preview)
        if preview.spec.key not in recorded or row.phase == Phase.INVALID or row.errors:
            rows.append(row)
    return rows


def row_from_record(base: Row, record: Record) -> Row:
    return row_from_status(base, record_status(record))


def row_from_status(base: Row, status: Status) -> Row:
    return dataclasses.replace(
        base,
        phase=str(status.phase),
        stable=status.stable_version,
        canary=status.canary_version,
        weight=status.canary_weight,
        step=status.current_step,
        steps=status.steps,
        message=status.message,
        reason=status.reason,
        errors=status.errors,
        warmup=f"{status.warmup.allocated}/{status.warmup.requested}" if status.warmup is not None else "",
        history=status.history,
        evidence=status.evidence,
    )


def row_from_preview(preview: Preview) -> Row:
    spec = preview.spec
    base = Row(name=spec.key, function=spec.function_name, alias=spec.alias, phase="Unknown")
    if preview.outcome is None:
        return dataclasses.replace(base, errors=(preview.error or "unknown error",))
    return row_from_status(base, preview.outcome.decision.status)


def _invalid_file_row(file: str, errors: tuple[str, ...]) -> Row:
    return Row(name=file, function="-", alias="-", phase=str(Phase.INVALID), errors=errors)


def render(rows: Iterable[Row], output: str) -> str:
    rows = list(rows)
    if output == "json":
        return json.dumps([_as_dict(r) for r in rows], indent=2)
    if output == "yaml":
        return yaml.safe_dump([_as_dict(r) for r in rows], sort_keys=False).rstrip()
    return _table(rows)


def _as_dict(row: Row) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data["errors"] = list(row.errors)
    data["history"] = [
        {"version": h.version, "outcome": h.outcome, "reason": h.reason, "at": _iso(h.at), "by": h.by}
        | ({"detail": h.detail} if h.detail else {})
        for h in row.history
    ]
    data["evidence"] = [evidence_fields(e) for e in row.evidence]
    if not row.steps:
        del data["steps"]  # unknown (an old record, no document): left out rather than shown as 0
    # Unknown (no document given) or empty fields are left out rather than shown as null.
    return {key: value for key, value in data.items() if value is not None and value != ""}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def rich_table(rows: Iterable[Row]) -> Table:
    """The same columns for a terminal: phase in colour, errors in red."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in COLUMNS:
        table.add_column(column, overflow="fold" if column == "MESSAGE" else "ellipsis", no_wrap=column != "MESSAGE")
    for row in rows:
        cells = [Text(cell) for cell in row.cells()]
        cells[COLUMNS.index("PHASE")].stylize(PHASE_STYLES.get(row.phase, ""))
        if row.errors:
            cells[-1].stylize("red")
        table.add_row(*cells)
    return table


def _table(rows: list[Row]) -> str:
    table = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]
        for line in table
    ).rstrip()
