"""What the demo shows: one ``DemoView`` of the story so far, drawn live with rich or as plain lines.

The story, the engine and the traffic write into the view; this module only reads it. ``render`` is
a pure function of the view and the clock, so the live screen redraws it a few times a second and a
test can draw it on a recording console. Without a terminal, ``PlainReporter`` prints one line per
thing that happened instead (an act begins, a transition, an alarm changes state), which is also
what a CI log wants.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from controller.core.types import Event, Phase, Status

PHASE_STYLES = {
    Phase.HEALTHY: "bold green",
    Phase.PROGRESSING: "bold cyan",
    Phase.PROMOTING: "bold cyan",
    Phase.PAUSED: "bold yellow",
    Phase.ROLLED_BACK: "bold red",
    Phase.DEGRADED: "bold red",
    Phase.INVALID: "bold magenta",
}
ALARM_STYLES = {"OK": "green", "ALARM": "bold red", "INSUFFICIENT_DATA": "dim"}
EVENTS_SHOWN = 8
BAR_WIDTH = 40


@dataclass(frozen=True)
class Moment:
    """One line of the story's log: seconds since the start, what happened, and whether it is bad news."""

    at: float
    text: str
    warning: bool = False


@dataclass
class DemoView:
    """The story so far; mutated by the demo's tasks on one event loop, read by the renderers."""

    started: float
    # Seconds each step of the plan may last: a pause's duration, 0 for a weight step.
    plan: tuple[float, ...] = ()
    act: str = "setting up"
    status: Status | None = None
    traffic: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=dict)
    alarms: Mapping[str, str] = field(default_factory=dict)
    moments: list[Moment] = field(default_factory=list)
    listeners: list[Callable[[Moment], None]] = field(default_factory=list, repr=False)

    def tell(self, text: str, *, warning: bool = False, now: float | None = None) -> Moment:
        moment = Moment(at=(now if now is not None else time.time()) - self.started, text=text, warning=warning)
        self.moments.append(moment)
        for listener in self.listeners:
            listener(moment)
        return moment

    def begin(self, act: str) -> None:
        self.act = act
        self.tell(act)

    def event(self, event: Event) -> None:
        self.tell(f"{event.reason}: {event.message}", warning=event.warning)

    def set_alarms(self, states: Mapping[str, str]) -> None:
        for name, state in sorted(states.items()):
            if self.alarms.get(name) != state:
                self.tell(f"alarm {name} is {state}", warning=state == "ALARM")
        self.alarms = dict(states)


def render(view: DemoView, *, now: float) -> RenderableType:
    """The live screen: the act, the rollout, the traffic split, the alarms and the latest events."""
    return Panel(
        Group(_rollout(view, now), Text(), _traffic(view), Text(), _alarms(view), Text(), _events(view)),
        title=f"[bold]lambda-rollouts demo[/]  {view.act}",
        subtitle=f"{now - view.started:.0f}s  ·  Ctrl-C stops and cleans up",
    )


def _rollout(view: DemoView, now: float) -> RenderableType:
    status = view.status
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    if status is None:
        table.add_row("rollout", "waiting for the controller's first look")
        return table
    table.add_row("phase", Text(f"{status.phase} ({status.reason})", style=PHASE_STYLES.get(status.phase, "")))
    table.add_row("stable", _version(status.stable_version))
    table.add_row("canary", _version(status.canary_version))
    table.add_row("weight", weight_bar(status.canary_weight if status.canary_version else 0))
    table.add_row("step", _step(view, status, now))
    table.add_row("message", Text("; ".join(status.errors) or status.message, overflow="fold"))
    return table


def _version(version: str | None) -> str:
    return f"version {version}" if version else "-"


def weight_bar(canary_percent: int, *, width: int = BAR_WIDTH) -> Text:
    """``[#####.....] 90% stable / 10% canary``: the alias's split at a glance."""
    canary_cells = round(width * canary_percent / 100)
    bar = Text("[")
    bar.append("█" * (width - canary_cells), style="green")
    bar.append("█" * canary_cells, style="cyan")
    bar.append(f"] {100 - canary_percent}% stable / {canary_percent}% canary")
    return bar


def _step(view: DemoView, status: Status, now: float) -> str:
    if status.steps == 0 or status.canary_version is None:
        return "-"
    shown = f"{min(status.current_step + 1, status.steps)}/{status.steps}"
    if status.current_step < len(view.plan) and view.plan[status.current_step] > 0 and status.step_started_at:
        left = max(0.0, view.plan[status.current_step] - (now - status.step_started_at))
        return f"{shown}  pause, {left:.0f}s left"
    return shown


def _traffic(view: DemoView) -> RenderableType:
    table = Table(title="traffic, last second (simulated)", title_justify="left", box=None, padding=(0, 2))
    for column in ("version", "invocations", "errors"):
        table.add_column(column, justify="right" if column != "version" else "left")
    for version in sorted(view.traffic):
        failed = view.errors.get(version, 0)
        table.add_row(version, str(view.traffic[version]), Text(str(failed), style="red" if failed else ""))
    return table


def _alarms(view: DemoView) -> RenderableType:
    table = Table(title="watched alarms", title_justify="left", box=None, padding=(0, 2))
    table.add_column("alarm")
    table.add_column("state")
    for name, state in sorted(view.alarms.items()):
        table.add_row(name, Text(state, style=ALARM_STYLES.get(state, "")))
    return table


def _events(view: DemoView) -> RenderableType:
    lines = Text()
    for moment in view.moments[-EVENTS_SHOWN:]:
        lines.append(f"{moment.at:5.1f}s  ", style="dim")
        lines.append(moment.text + "\n", style="red" if moment.warning else "")
    return Panel(lines, title="what happened", title_align="left")


class PlainReporter:
    """One line per moment, for logs and pipes: ``[  12.3s] text``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, moment: Moment) -> None:
        marker = "!" if moment.warning else " "
        print(f"[{moment.at:6.1f}s]{marker} {moment.text}", file=self._stream, flush=True)
