"""The install path users take: the wheel, no extras, a fresh virtualenv, exactly as the image is built.

The test environment has moto, kmock and the test tools, so a command that imports one of them by
accident passes every other test and crashes for every user (``pip install .`` and the container
image). Here the Dockerfile's own build steps are run with its paths mapped into a temporary
folder: the files it copies, its ``pip wheel`` line, its ``packaging/install.sh`` line with
``requirements/runtime.lock``. Then the installed ``lambda-rollouts`` runs from outside the
repository against the strict emulator this test process starts.

It needs PyPI or pip's cache (the locked dependencies, and setuptools to build the wheel); pip's
cache keeps every run after the first fast. The venv is built once per session.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller import __version__
from controller.emulator import Emulator
from tests.integration.helpers import alias_routing, canary, rollout_document, seed_alias, write_document

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
INSTALL_SCRIPT = "packaging/install.sh"
RUNTIME_LOCK = "requirements/runtime.lock"
# Where the image puts things, and where this test puts them instead.
IMAGE_VENV, IMAGE_WHEELS = "/opt/venv", "/wheels"
# Installed by the [emulator] and [test] extras only: a plain install must not have them.
NOT_INSTALLED = ("moto", "kmock", "pytest", "hypothesis", "flask", "mypy", "ruff", "uv")


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` of the Dockerfile and its instructions (continuation lines joined)."""

    base: str
    name: str | None
    instructions: tuple[tuple[str, str], ...]  # (INSTRUCTION, arguments)

    def arguments(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def dockerfile_stages(text: str) -> list[Stage]:
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            words = arguments.split()
            stages.append(Stage(base=words[0], name=words[2] if len(words) == 3 else None, instructions=()))
        else:
            last = stages[-1]
            stages[-1] = Stage(last.base, last.name, (*last.instructions, (instruction.upper(), arguments.strip())))
    return stages


STAGES = dockerfile_stages(DOCKERFILE.read_text())
BUILDER, FINAL = STAGES[0], STAGES[-1]


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    outside: Path  # a folder outside the repository, with a copy of examples/: the commands run here

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "lambda-rollouts"), *args],
            cwd=self.outside,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def env(self, **extra: str) -> dict[str, str]:
        """The user's environment: this venv on PATH, nothing of the test's Python, no AWS settings."""
        inherited = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not key.startswith("AWS_")
        }
        return {**inherited, "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", **extra}


def normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def copy_build_context(destination: Path) -> None:
    """What the builder stage COPYs from the build context, to the same places under its WORKDIR."""
    for arguments in BUILDER.arguments("COPY"):
        *sources, target = arguments.split()
        for source in sources:
            origin = REPO / source
            place = destination / target / origin.name if target.endswith("/") else destination / target
            place.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, place, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, place)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("install")
    context, venv, wheels = work / "src", work / "venv", work / "wheels"
    copy_build_context(context)
    mapped = {IMAGE_VENV: str(venv), IMAGE_WHEELS: str(wheels), "python": sys.executable}
    env = {**os.environ, "PYTHON": sys.executable, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    for command in BUILDER.arguments("RUN"):  # the image's build steps, paths mapped
        argv = [mapped.get(word, word) for word in shlex.split(command)]
        result = subprocess.run(argv, cwd=context, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    (wheel,) = wheels.glob("lambda_rollouts-*.whl")
    outside = work / "elsewhere"
    shutil.copytree(REPO / "examples", outside / "examples")
    return Installed(venv=venv, wheel=wheel, outside=outside)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator.start(port=0) as emu:
        yield emu


def test_the_dockerfile_installs_with_the_script_and_the_runtime_lock() -> None:
    assert [stage.base for stage in STAGES] == [BUILDER.base, BUILDER.base]  # one base image, pinned once
    image, _, tag = BUILDER.base.partition(":")
    version = tag.split("-")[0]
    assert image == "python" and version.count(".") == 2, "pin the exact patch release, e.g. 3.11.7-slim-bookworm"
    assert version.startswith("3.11."), "the lock is made for Python 3.11 (make lock)"
    installs = [args for args in BUILDER.arguments("RUN") if INSTALL_SCRIPT in args]
    assert installs == [f"sh {INSTALL_SCRIPT} {IMAGE_VENV} {IMAGE_WHEELS} {RUNTIME_LOCK}"]
    sources = [word for arguments in BUILDER.arguments("COPY") for word in arguments.split()[:-1]]
    assert INSTALL_SCRIPT in sources and RUNTIME_LOCK in sources
    ignored = {line.rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] != "#"}
    assert not {source.split("/")[0] for source in sources} & ignored, "the build context leaves out a COPY source"
    assert FINAL.arguments("COPY") == [f"--from={BUILDER.name} {IMAGE_VENV} {IMAGE_VENV}"]
    assert FINAL.arguments("ENTRYPOINT") == ['["lambda-rollouts"]']
    assert FINAL.arguments("CMD") == ['["operator"]']


def test_the_wheel_carries_the_schema_the_validator_loads(installed: Installed) -> None:
    # controller/document/lambdarollout.yaml is a symlink to crds/: the wheel must hold the file itself.
    with zipfile.ZipFile(installed.wheel) as wheel:
        packaged = wheel.read("controller/document/lambdarollout.yaml")
    assert packaged == (REPO / "crds" / "lambdarollout.yaml").read_bytes()


def test_the_venv_holds_exactly_the_lock_and_the_project(installed: Installed) -> None:
    listed = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    present = {normalized(entry["name"]): entry["version"] for entry in json.loads(listed.stdout)}
    pins = [line.split()[0] for line in (REPO / RUNTIME_LOCK).read_text().splitlines() if line[:1].isalnum()]
    locked = {normalized(name): version for name, _, version in (pin.partition("==") for pin in pins)}
    assert not {normalized(name) for name in NOT_INSTALLED} & set(present)
    assert present.pop("lambda-rollouts") == __version__
    for tool in ("pip", "setuptools", "wheel"):  # the venv's own installers, not dependencies
        present.pop(tool, None)
    assert present == locked


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import controller; print(controller.__file__)"],
        cwd=installed.outside,
        env=installed.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.venv)


def test_help_lists_every_verb(installed: Installed) -> None:
    result = installed.run("--help")
    assert result.returncode == 0, result.stderr
    for verb in ("validate", "plan", "run", "operator", "get", "promote", "abort", "demo", "emulator"):
        assert f"    {verb} " in result.stdout
    operator = installed.run("operator", "--help")
    assert operator.returncode == 0, operator.stderr
    assert "operator" in operator.stdout and "--metrics-port" in operator.stdout


def test_validate_from_outside_the_repository(installed: Installed) -> None:
    valid = installed.run("validate", "examples")
    assert valid.returncode == 0, valid.stderr
    assert "examples/canary.yaml: 1 rollout valid" in valid.stdout
    broken = installed.outside / "broken.yaml"
    broken.write_text(
        "apiVersion: lambda.rollouts.dev/v1alpha1\nkind: LambdaRollout\nmetadata: {name: broken}\n"
        "spec:\n  functionName: f\n  alias: live\n  version: '2'\n"
        "  strategy: {canary: {steps: [{setWeight: 150}]}}\n"
    )
    invalid = installed.run("validate", broken.name)
    assert invalid.returncode == 1
    assert "broken.yaml:8: spec.strategy.canary.steps[0].setWeight" in invalid.stderr
    assert "Traceback" not in invalid.stderr


def test_plan_and_run_once_against_the_emulator(installed: Installed, emulator: Emulator) -> None:
    seed_alias(emulator, "installed-shop")
    source = installed.outside / "rollouts"
    source.mkdir()
    write_document(
        source, rollout_document("installed-shop", function="installed-shop", version="2", strategy=canary(10, 600))
    )
    env = installed.env(
        AWS_ENDPOINT_URL=emulator.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )

    plan = installed.run("plan", "rollouts", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "installed-shop" in plan.stdout and "10%" in plan.stdout
    assert alias_routing(emulator, "installed-shop", "live") == ("1", {})  # plan changes nothing

    once = installed.run("run", "--source", "rollouts", "--once", "--log-format", "json", env=env)
    assert once.returncode == 0, once.stderr
    assert alias_routing(emulator, "installed-shop", "live") == ("1", {"2": 0.1})
    for output in (plan.stderr, once.stderr):
        assert "Found credentials" not in output  # botocore's INFO line is held back
        assert "Traceback" not in output


def test_demo_without_the_extra_says_which_extra_to_install(installed: Installed) -> None:
    for verb in ("demo", "emulator"):
        result = installed.run(verb)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"lambda-rollouts {verb} needs the [emulator] extra: pip install 'lambda-rollouts[emulator]'"
        ]
