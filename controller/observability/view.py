"""What a person watching one rollout sees: a pure function from a ``Snapshot`` to text or rich.

``get NAME --watch`` (and anything else that shows a rollout live) gathers a ``Snapshot`` (the
status, the alias as read, the watched alarms' states, the clock) and hands it to ``render`` for a
rich Live screen or to ``line`` for one plain line per change when stdout is not a terminal. Both
are pure, so a test draws them on a recording console and compares what is shown with AWS, and the
reads stay in the command that owns the AWS calls.

Traffic is shown from the alias as read whenever there is one, not from the record: the split a
person sees is the split callers get, even while a write is in flight.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from controller.core.sequential import Conclusion
from controller.core.status import evidence_line, evidence_text
from controller.core.types import AliasRouting, HistoryEntry, Phase, SequentialEvidence, Status

PHASE_STYLES: Mapping[str, str] = {
    Phase.PENDING: "bold",
    Phase.PROGRESSING: "bold cyan",
    Phase.PROMOTING: "bold cyan",
    Phase.PAUSED: "bold yellow",
    Phase.HEALTHY: "bold green",
    Phase.ROLLED_BACK: "bold red",
    Phase.DEGRADED: "bold red",
    Phase.INVALID: "bold magenta",
}
ALARM_STYLES: Mapping[str, str] = {"OK": "green", "ALARM": "bold red", "INSUFFICIENT_DATA": "yellow"}
CONCLUSION_STYLES: Mapping[str, str] = {Conclusion.REGRESSION: "bold red", Conclusion.NO_REGRESSION: "bold green"}
STABLE_STYLE, CANARY_STYLE = "blue", "yellow"
BAR_WIDTH = 40
HISTORY_SHOWN = 5


@dataclass(frozen=True)
class Traffic:
    """Who gets what, in percent: ``canary`` is None when one version takes everything."""

    stable: str | None
    canary: str | None = None
    canary_percent: float = 0.0

    @property
    def stable_percent(self) -> float:
        return 100.0 - self.canary_percent if self.stable is not None else 0.0


@dataclass(frozen=True)
class Snapshot:
    """Everything the view shows of one rollout at one instant."""

    name: str
    function: str
    alias: str
    status: Status
    now: float
    # The alias as read this refresh; None when it was not read or does not exist.
    routing: AliasRouting | None = None
    # The current step's timed pause in seconds (None: not in a timed pause, or unknown without the document).
    pause: float | None = None
    # Watched alarm -> state (OK, ALARM, INSUFFICIENT_DATA); "missing" for one that does not exist.
    alarms: Mapping[str, str] = field(default_factory=dict)
    desired: str | None = None


def traffic(snapshot: Snapshot) -> Traffic:
    """The split from the alias as read, else from the status."""
    routing = snapshot.routing
    if routing is not None:
        if routing.additional is None or routing.weight <= 0:
            return Traffic(routing.primary)
        return Traffic(routing.primary, routing.additional, round(routing.weight * 100, 2))
    status = snapshot.status
    if status.canary_version is None or status.canary_weight <= 0:
        return Traffic(status.stable_version)
    if status.canary_weight >= 100:
        return Traffic(status.canary_version)
    return Traffic(status.stable_version, status.canary_version, float(status.canary_weight))


def pause_left(snapshot: Snapshot) -> float | None:
    """Seconds left in the current timed pause; None when there is none running."""
    status = snapshot.status
    if snapshot.pause is None or status.step_started_at is None or status.phase is not Phase.PROGRESSING:
        return None
    return max(0.0, snapshot.pause - (snapshot.now - status.step_started_at))


def _percent(value: float) -> str:
    return f"{value:g}%"


def traffic_text(split: Traffic) -> str:
    """``stable 1: 90% | canary 2: 10%``; what the plain line and the live bar's legend both say."""
    if split.stable is None:
        return "no alias yet"
    text = f"stable {split.stable}: {_percent(split.stable_percent)}"
    if split.canary is not None:
        text += f" | canary {split.canary}: {_percent(split.canary_percent)}"
    return text


def step_text(status: Status) -> str:
    """``2/4``: the step under way as every surface counts it (``controller.core.status``)."""
    if not status.steps:
        return str(status.current_step)
    return f"{status.current_step}/{status.steps}"


def pause_text(snapshot: Snapshot) -> str:
    left = pause_left(snapshot)
    if left is not None and snapshot.pause is not None:
        return f"{left:.0f}s left of {snapshot.pause:.0f}s"
    if snapshot.status.phase is Phase.PAUSED:
        return f"held ({snapshot.status.reason})" if snapshot.status.reason else "held"
    return "-"


def alarms_text(alarms: Mapping[str, str]) -> str:
    return ", ".join(f"{name}={state}" for name, state in sorted(alarms.items())) or "-"


def _warmup_text(status: Status) -> str | None:
    # ``warmup`` exists once the concurrency work lands in the core; older statuses simply lack it.
    warmup = getattr(status, "warmup", None)
    if warmup is None:
        return None
    return f"version {warmup.version}: {warmup.allocated}/{warmup.requested} provisioned ({warmup.status})"


def history_text(entry: HistoryEntry) -> str:
    at = time.strftime("%H:%M:%S", time.localtime(entry.at))
    by = f" by {entry.by}" if entry.by else ""
    detail = f": {entry.detail}" if entry.detail else ""
    return f"{at} version {entry.version} {entry.outcome} ({entry.reason}){by}{detail}"


def line(snapshot: Snapshot, *, countdown: bool = True) -> str:
    """One plain line; without ``countdown`` it changes only when something other than the clock does."""
    status = snapshot.status
    parts = [
        snapshot.name,
        str(status.phase),
        traffic_text(traffic(snapshot)),
        f"step {step_text(status)}",
    ]
    if countdown:
        parts.append(f"pause {pause_text(snapshot)}")
    warmup = _warmup_text(status)
    if warmup:
        parts.append(f"warm-up {warmup}")
    if snapshot.alarms:
        parts.append(f"alarms {alarms_text(snapshot.alarms)}")
    if status.reason:
        parts.append(f"reason {status.reason}")
    if countdown and status.message:
        # Left out of the change-detecting form: the message may count a pause down too. It ends
        # with the sequential tests' evidence, when they run.
        parts.append(status.message)
    elif status.evidence:
        parts.append(evidence_text(status.evidence))
    parts += [f"error: {error}" for error in status.errors if error != status.message]
    return " | ".join(parts)


def traffic_bar(split: Traffic, *, width: int = BAR_WIDTH) -> Text:
    """A bar split by weight: stable in blue, canary in yellow, with the legend after it."""
    canary_cells = round(width * split.canary_percent / 100) if split.canary is not None else 0
    if split.canary is not None and split.canary_percent > 0:
        canary_cells = max(1, canary_cells)  # 1% must still be visible
    bar = Text()
    bar.append("█" * (width - canary_cells), style=STABLE_STYLE if split.stable else "dim")
    bar.append("█" * canary_cells, style=CANARY_STYLE)
    bar.append("  " + traffic_text(split))
    return bar


def _steps_bar(status: Status) -> RenderableType:
    if not status.steps:
        return Text(f"step {status.current_step} (run with --source for the plan)")
    # Steps behind the one under way; all of them once finished.
    done = status.steps if status.phase is Phase.HEALTHY else max(0, min(status.current_step - 1, status.steps))
    grid = Table.grid(padding=(0, 1))
    grid.add_row(ProgressBar(total=status.steps, completed=done, width=BAR_WIDTH), Text(f"step {step_text(status)}"))
    return grid


def _alarms_table(alarms: Mapping[str, str]) -> RenderableType:
    if not alarms:
        return Text("-")
    table = Table.grid(padding=(0, 2))
    for name, state in sorted(alarms.items()):
        table.add_row(Text(name), Text(state, style=ALARM_STYLES.get(state, "magenta")))
    return table


def message_text(status: Status) -> str:
    """The message without the evidence it ends with (the screen shows that in its own rows)."""
    suffix = evidence_text(status.evidence)
    if not suffix or status.message == suffix:
        return "" if suffix else status.message
    return status.message.removesuffix(f"; {suffix}")


def _evidence_table(evidence: tuple[SequentialEvidence, ...]) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    for test in evidence:
        style = CONCLUSION_STYLES.get(test.conclusion, "")
        table.add_row(Text(evidence_line(test).removeprefix("sequential ")), Text(test.conclusion, style=style))
    return table


def render(snapshot: Snapshot) -> RenderableType:
    """The live screen for one rollout."""
    status = snapshot.status
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", justify="right")
    grid.add_column()
    phase = Text(str(status.phase), style=PHASE_STYLES.get(status.phase, "bold"))
    if status.reason:
        phase.append(f"  {status.reason}", style="dim")
    grid.add_row("phase", phase)
    grid.add_row("steps", _steps_bar(status))
    grid.add_row("traffic", traffic_bar(traffic(snapshot)))
    grid.add_row("pause", Text(pause_text(snapshot)))
    warmup = _warmup_text(status)
    if warmup:
        grid.add_row("warm-up", Text(warmup))
    grid.add_row("alarms", _alarms_table(snapshot.alarms))
    if status.evidence:
        grid.add_row("evidence", _evidence_table(status.evidence))
    grid.add_row("message", Text(message_text(status) or "-"))
    for error in status.errors:
        if error != status.message:
            grid.add_row("error", Text(error, style="red"))
    history = status.history[-HISTORY_SHOWN:]
    if history:
        grid.add_row("history", Group(*(Text(history_text(entry)) for entry in reversed(history))))
    title = f"{snapshot.name}  ({snapshot.function}:{snapshot.alias})"
    if snapshot.desired:
        title += f"  desired version {snapshot.desired}"
    return Panel(grid, title=title, title_align="left")
