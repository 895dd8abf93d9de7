"""What the demo shows: one ``DemoView`` of the story so far, drawn live with rich or as plain lines.

The story, the engine and the traffic write into the view; this module only reads it. The rollout
itself is drawn by ``controller.observability.view`` (the ``get --watch`` screen). ``render`` is
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

from controller.core.types import Event, Status
from controller.demo import world
from controller.observability import view as rollout_view
from controller.observability.view import Snapshot

EVENTS_SHOWN = 8


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
        Group(_rollout(view, now), _traffic(view), _events(view)),
        title=f"[bold]lambda-rollouts demo[/]  {view.act}",
        subtitle=f"{now - view.started:.0f}s  ·  Ctrl-C stops and cleans up",
    )


def _rollout(view: DemoView, now: float) -> RenderableType:
    """The rollout itself, drawn by the same view as ``get --watch``, so the demo teaches that screen."""
    status = view.status
    if status is None:
        return Text("waiting for the controller's first look")
    index = status.current_step - 1  # the plan's index of the step under way
    pause = view.plan[index] if 0 <= index < len(view.plan) and view.plan[index] > 0 else None
    snapshot = Snapshot(
        name=f"{world.NAMESPACE}/{world.ROLLOUT}",
        function=world.FUNCTION,
        alias=world.ALIAS,
        status=status,
        now=now,
        pause=pause,
        alarms=view.alarms,
    )
    return rollout_view.render(snapshot)


def _traffic(view: DemoView) -> RenderableType:
    table = Table(title="traffic, last second (simulated)", title_justify="left", box=None, padding=(0, 2))
    for column in ("version", "invocations", "errors"):
        table.add_column(column, justify="right" if column != "version" else "left")
    for version in sorted(view.traffic):
        failed = view.errors.get(version, 0)
        table.add_row(version, str(view.traffic[version]), Text(str(failed), style="red" if failed else ""))
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
