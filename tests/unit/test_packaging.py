"""pyproject.toml and the lock files agree, and say what the tools that read them understand.

A dependency added to pyproject.toml without ``make lock`` would be missing from the image (which
installs ``requirements/runtime.lock`` only, ``--no-deps``); these checks catch it in a second,
before the install test builds a venv.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def pins(lock: str) -> dict[str, str]:
    """``name -> version`` of a lock file written by ``uv pip compile``."""
    lines = (REPO / "requirements" / lock).read_text().splitlines()
    pairs = (line.split()[0].partition("==") for line in lines if line[:1].isalnum())
    return {canonicalize_name(name): version for name, _, version in pairs}


def requirements(*extras: str) -> list[Requirement]:
    listed = PROJECT["project"]["dependencies"] + [
        text for extra in extras for text in PROJECT["project"]["optional-dependencies"][extra]
    ]
    return [r for r in map(Requirement, listed) if canonicalize_name(r.name) != "lambda-rollouts"]


@pytest.mark.parametrize(
    ("lock", "extras"), [("runtime.lock", ()), ("test.lock", ("emulator", "test"))], ids=["runtime", "test"]
)
def test_each_lock_pins_every_requirement_within_its_range(lock: str, extras: tuple[str, ...]) -> None:
    pinned = pins(lock)
    for requirement in requirements(*extras):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is not in requirements/{lock}: run make lock"
        assert requirement.specifier.contains(pinned[name]), (
            f"{lock} pins {name}=={pinned[name]}, outside {requirement}"
        )


def test_the_runtime_lock_has_no_extra() -> None:
    assert not {"moto", "kmock", "pytest", "hypothesis", "flask"} & set(pins("runtime.lock"))


def test_the_emulator_extra_names_only_extras_moto_has() -> None:
    (moto,) = map(Requirement, PROJECT["project"]["optional-dependencies"]["emulator"])
    provided = set(importlib.metadata.metadata("moto").get_all("Provides-Extra") or ())
    assert moto.extras <= provided, f"moto has no extra {sorted(moto.extras - provided)}"


def test_license_is_an_spdx_expression_and_setuptools_reads_it() -> None:
    assert PROJECT["project"]["license"] == "Apache-2.0"
    (setuptools,) = [Requirement(r) for r in PROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert not setuptools.specifier.contains("76.1.0")  # SPDX strings need setuptools 77
