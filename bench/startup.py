"""How long ``lambda-rollouts`` takes to start: ``--help``, ``validate examples/`` and ``get --help``.

    python bench/startup.py                  # this tree, beside the figures recorded below
    python bench/startup.py --baseline REV   # this tree beside git revision REV, measured now
    python bench/startup.py --runs 20

Start-up is what a person waits for on every command and what a CI job pays per call. Each command
runs ``--runs`` times in a fresh interpreter (``python -m controller.cli``) and the median wall time
is printed; with ``hyperfine`` on PATH it does the timing (one warm-up run first), otherwise
``time.perf_counter`` around ``subprocess.run``. ``--baseline REV`` extracts that revision with
``git archive`` into a temporary folder and runs the same commands there with the same interpreter,
so both sides see the same installed packages.

Recorded baseline: revision 0cbe4cc, the last one whose CLI imported every command module (and so
boto3, kopf, rich, aiohttp and moto) to build its parser, measured by ``--baseline 0cbe4cc`` with
hyperfine on a 2-core machine shared with other work (load average 5-7), median of 10 runs:
``--help`` 1.34 s, ``validate examples/`` 0.97 s, ``get --help`` 1.52 s; this tree in the same run:
0.046 s, 0.28 s, 0.91 s. On a quieter moment (load 4) the baseline's ``--help`` took 0.78-0.98 s.
The target for ``--help`` is under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS: tuple[tuple[str, ...], ...] = (("--help",), ("validate", "examples/"), ("get", "--help"))
RECORDED_REVISION = "0cbe4cc"
RECORDED: dict[tuple[str, ...], float] = {("--help",): 1.34, ("validate", "examples/"): 0.97, ("get", "--help"): 1.52}
HELP_TARGET = 0.5


@dataclass(frozen=True)
class Tree:
    """A source tree to start the CLI from: the command runs with the tree as working directory."""

    label: str
    path: Path


def argv(command: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "controller.cli", *command]


def median_seconds(tree: Tree, command: Sequence[str], *, runs: int) -> float:
    hyperfine = shutil.which("hyperfine")
    if hyperfine is not None:
        return _hyperfine(hyperfine, tree, command, runs=runs)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        # validate exits 0 on the examples; its output is not what is measured.
        subprocess.run(argv(command), cwd=tree.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _hyperfine(binary: str, tree: Tree, command: Sequence[str], *, runs: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        options = ["--shell=none", "--warmup=1", f"--runs={runs}", f"--export-json={report}", "--style=none"]
        subprocess.run(
            [binary, *options, " ".join(argv(command))],
            cwd=tree.path,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        return float(json.loads(report.read_text())["results"][0]["median"])


def extract(revision: str, into: Path) -> Tree:
    """``revision`` of this repository as plain files under ``into`` (the repository is left untouched)."""
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, capture_output=True, check=True).stdout
    with tempfile.TemporaryFile() as stream:
        stream.write(archive)
        stream.seek(0)
        with tarfile.open(fileobj=stream) as tar:
            tar.extractall(into, filter="tar")
    return Tree(label=revision, path=into)


def main(arguments: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="runs per command (default 10); the median is shown")
    parser.add_argument("--baseline", metavar="REV", help="measure this git revision beside the tree")
    options = parser.parse_args(arguments)
    timer = "hyperfine" if shutil.which("hyperfine") else "perf_counter around subprocess"
    current = Tree(label="this tree", path=REPO)
    with tempfile.TemporaryDirectory(prefix="startup-baseline-") as folder:
        baseline = extract(options.baseline, Path(folder)) if options.baseline else None
        print(f"lambda-rollouts start-up: median of {options.runs} runs ({timer}), Python {sys.version.split()[0]}")
        other = f"{baseline.label} (measured)" if baseline else f"{RECORDED_REVISION} (recorded)"
        print(f"{'command':<22} {'this tree':>10} {other:>22}")
        help_time = 0.0
        for command in COMMANDS:
            ours = median_seconds(current, command, runs=options.runs)
            theirs = median_seconds(baseline, command, runs=options.runs) if baseline else RECORDED[command]
            help_time = ours if command == ("--help",) else help_time
            print(f"{' '.join(command):<22} {ours:>9.3f}s {theirs:>21.3f}s")
    verdict = "met" if help_time < HELP_TARGET else "MISSED"
    print(f"target: --help under {HELP_TARGET} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
