"""The command line imports a verb's module only when that verb runs, and never needs an extra it lacks.

A plain ``pip install lambda-rollouts`` has no moto, kmock or test tools; the test environment has
them all, so these tests run the CLI in a subprocess where those packages cannot be imported
(``sys.modules[name] = None`` makes ``import name`` fail as if it were not installed), and read
``-X importtime`` to see what ``--help`` really loads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a plain install lacks (the [emulator] and [test] extras), plus what --help must not need.
ABSENT = ("moto", "kmock", "pytest", "hypothesis", "kopf", "boto3")
HEAVY = ("boto3", "botocore", "kopf", "moto", "rich", "aiohttp", "prometheus_client")


def cli(*args: str, absent: tuple[str, ...] = ABSENT, modules: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``lambda-rollouts ARGS`` in a fresh interpreter in which the ``absent`` packages cannot be imported.

    With ``modules``, the names in ``sys.modules`` when it exits are written there, one a line.
    """
    listing = "" if modules is None else f"    open({str(modules)!r}, 'w').write('\\n'.join(sys.modules))\n"
    program = (
        "import sys\n"
        f"for name in {absent!r}:\n"
        "    sys.modules[name] = None\n"
        "from controller.cli import main\n"
        "try:\n"
        f"    sys.exit(main({list(args)!r}))\n"
        f"finally:\n{listing or '    pass'}\n"
    )
    return subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60)


def loaded_modules(tmp_path: Path, *args: str) -> set[str]:
    """The modules loaded once ``lambda-rollouts ARGS`` has run (with no package hidden)."""
    listing = tmp_path / "modules.txt"
    result = cli(*args, absent=(), modules=listing)
    assert result.returncode == 0, result.stderr
    return set(listing.read_text().splitlines())


def importtime_modules(*args: str) -> set[str]:
    """The modules ``python -X importtime -m controller.cli ARGS`` reports importing.

    ``-X importtime`` lists import statements, not ``importlib.import_module`` calls, so the
    command modules themselves are checked through ``sys.modules`` (``loaded_modules``).
    """
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "controller.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rpartition("|")[2].strip() for line in lines[1:]}  # lines[0] is the column header


def heavy(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in HEAVY}


def test_help_works_without_any_heavy_or_optional_package() -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    for verb in ("validate", "plan", "run", "operator", "get", "promote", "demo", "emulator"):
        assert f"    {verb} " in result.stdout


def test_help_imports_no_command_module_and_no_heavy_package(tmp_path: Path) -> None:
    reported = importtime_modules("--help")
    assert {"argparse", "controller.errors"} <= reported  # the listing is real
    assert not heavy(reported)
    loaded = loaded_modules(tmp_path, "--help")
    assert "controller.cli" in loaded
    assert not {name for name in loaded if name.startswith("controller.commands")}
    assert not heavy(loaded)


def test_a_verb_imports_only_its_own_command_module(tmp_path: Path) -> None:
    loaded = loaded_modules(tmp_path, "validate", str(REPO / "examples"))
    assert {name for name in loaded if name.startswith("controller.commands.")} == {"controller.commands.validate"}
    assert not heavy(loaded)  # validating files needs no AWS, no terminal UI


@pytest.mark.parametrize(
    ("verb", "option"), [("run", "--source"), ("promote", "--full"), ("get", "--watch"), ("validate", "PATH")]
)
def test_verb_help_shows_the_verbs_own_options(verb: str, option: str) -> None:
    result = cli(verb, "--help", absent=("moto", "kmock", "pytest", "hypothesis"))
    assert result.returncode == 0, result.stderr
    assert option in result.stdout
    assert "--aws-endpoint-url" in result.stdout  # and the options every verb shares


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("lambda-rollouts 0.")


@pytest.mark.parametrize("args", [("demo",), ("demo", "--no-live"), ("emulator", "--port", "0"), ("demo", "--help")])
def test_verbs_needing_the_emulator_extra_say_which_extra_to_install(args: tuple[str, ...]) -> None:
    result = cli(*args, absent=("moto",))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"lambda-rollouts {args[0]} needs the [emulator] extra: pip install 'lambda-rollouts[emulator]'"
    ]


def test_an_unknown_verb_is_a_usage_error_listing_the_verbs() -> None:
    result = cli("deploy")
    assert result.returncode == 2
    assert "invalid choice: 'deploy'" in result.stderr and "'validate'" in result.stderr


def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path: Path) -> None:
    """``lambda-rollouts ... | head``: no traceback and no "BrokenPipeError" line when the pipe closes."""
    for i in range(1500):  # far more than a pipe buffer holds, so the writer meets the closed pipe
        (tmp_path / f"{i:04d}-{'x' * 90}.yaml").write_text("kind: ConfigMap\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "validate", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    assert "no LambdaRollout documents" in process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 141
    assert stderr == ""
