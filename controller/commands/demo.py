"""``lambda-rollouts demo [--speed X] [--no-live]``: the whole story on a laptop, no AWS account needed.

Starts the strict emulator in this process (or uses ``--aws-endpoint-url``, e.g. an emulator a test
started, so the outcome can be checked from AWS's side), writes the rollout documents to a temporary
folder and runs the controller on it with simulated traffic (``controller.demo.story``), live on the
terminal or as plain lines without one. Exit code: 0 when version 2 was promoted and version 3 rolled
back by an alarm, 1 otherwise, 130 when interrupted.

SIGINT and SIGTERM stop it at any moment without leaving anything behind: the story's tasks are
stopped and awaited, then the emulator is stopped and the temporary folder removed (an
``ExitStack`` unwinds them in reverse order of creation, whatever happened).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.panel import Panel

from controller.demo.screen import DemoView, PlainReporter, render
from controller.demo.story import Story, StoryResult, summary, until_stopped
from controller.observability.logs import configure_logging

INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speed", type=_positive, default=1.0, metavar="X", help="divide every duration by X (default 1)"
    )
    parser.add_argument("--no-live", action="store_true", help="plain progress lines instead of the live screen")


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def run(args: argparse.Namespace) -> int:
    # Controller logs would tear the live screen apart: only warnings, unless asked for more.
    configure_logging(args.log_format, "WARNING" if args.log_level == "INFO" else args.log_level)
    console = Console()
    live = console.is_terminal and not args.no_live
    return asyncio.run(_main(args, console=console, live=live))


async def _main(args: argparse.Namespace, *, console: Console, live: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    view = DemoView(started=time.time())
    if not live:
        view.listeners.append(PlainReporter(sys.stdout))
    with contextlib.ExitStack() as resources:
        endpoint = args.aws_endpoint_url or _start_emulator(resources, view)
        directory = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="lambda-rollouts-demo-")))
        region = args.region or "us-east-1"
        story = Story(region=region, endpoint=endpoint, directory=directory, view=view, speed=args.speed)
        if live:
            result = await _live(story, view, console, stop)
        else:
            result = await until_stopped(story.play(), stop)
    if result is None:
        console.print("interrupted: the emulator is stopped and the temporary folder removed")
        return INTERRUPTED
    _print_summary(console, result, live=live)
    return 0 if result.ok else 1


def _start_emulator(resources: contextlib.ExitStack, view: DemoView) -> str:
    from controller.emulator import Emulator  # moto is heavy: only when needed

    # The story sets the emulator's alarm clock and traffic itself (also on an emulator it is given).
    emulator = resources.enter_context(Emulator.start(port=0))
    view.tell(f"strict AWS emulator listening on {emulator.url} (in this process)")
    return emulator.url


async def _live(story: Story, view: DemoView, console: Console, stop: asyncio.Event) -> StoryResult | None:
    with Live(console=console, refresh_per_second=8, transient=False) as screen:
        # get_renderable is called on every refresh, so the pause countdown moves on its own.
        screen.get_renderable = lambda: render(view, now=time.time())  # type: ignore[method-assign]
        screen.refresh()
        return await until_stopped(story.play(), stop)


def _print_summary(console: Console, result: StoryResult, *, live: bool) -> None:
    lines = summary(result)
    if live:
        style = "green" if result.ok else "red"
        console.print(Panel("\n".join(lines), title="summary", title_align="left", border_style=style))
    else:
        print("\n".join(lines), flush=True)
