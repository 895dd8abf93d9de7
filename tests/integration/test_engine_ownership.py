"""Ownership against the strict emulator: a rollout may only move functions its namespace may move.

Each refusal is checked where it matters, in AWS's call log: an Invalid ``NotOwner`` rollout writes
nothing at all (no alias, no tag), while the same rollout in an allowed namespace proceeds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from controller.cli import main
from controller.core.codec import MANAGED_KEY
from controller.core.ownership import OWNER_TAG
from controller.core.reasons import Reason
from controller.core.types import Phase
from controller.document.ownership_config import OwnershipPolicy
from controller.emulator import Emulator
from tests.integration.helpers import (
    EngineHarness,
    alias_routing,
    alias_writes,
    canary,
    function_tags,
    rollout_document,
    seed_alias,
    write_calls,
)
from tests.integration.helpers import write_document as write

FUNCTION = "pay-api"


@pytest.fixture
def seeded(aws: Emulator) -> Emulator:
    seed_alias(aws, FUNCTION, tags={OWNER_TAG: "team-b"})
    aws.clear_calls()
    return aws


def promoted(h: EngineHarness, name: str, namespace: str) -> Callable[[], bool]:
    """The rollout reached Healthy on version 2 (it may have no status yet)."""

    def check() -> bool:
        status = h.engine.status(f"{namespace}/{name}")
        return status is not None and status.phase is Phase.HEALTHY and status.stable_version == "2"

    return check


def document(namespace: str, *, alias: str = "live", name: str = "pay") -> dict[str, object]:
    return rollout_document(
        name, function=FUNCTION, alias=alias, version="2", strategy=canary(50, 1), namespace=namespace
    )


def test_a_rollout_in_another_namespace_than_the_owner_tag_is_invalid_and_writes_nothing(
    seeded: Emulator, docs: Path
) -> None:
    write(docs, document("team-a"))
    with EngineHarness(seeded, docs) as h:
        for _ in range(3):
            h.tick(5)
        status = h.status("pay", "team-a")
        assert (status.phase, status.reason) == (Phase.INVALID, Reason.NOT_OWNER)
        assert "namespace team-a" in status.message and FUNCTION in status.message
    assert write_calls(seeded) == []
    assert alias_routing(seeded, FUNCTION, "live") == ("1", {})
    assert MANAGED_KEY not in function_tags(seeded, FUNCTION)


def test_the_same_rollout_in_the_owning_namespace_proceeds(seeded: Emulator, docs: Path) -> None:
    write(docs, document("team-b"))
    with EngineHarness(seeded, docs) as h:
        h.drive(promoted(h, "pay", "team-b"))
    assert alias_routing(seeded, FUNCTION, "live") == ("2", {})
    assert function_tags(seeded, FUNCTION)[MANAGED_KEY] == "live=team-b/pay"


def test_tagging_the_function_for_a_refused_namespace_lets_it_proceed(seeded: Emulator, docs: Path) -> None:
    write(docs, document("team-a"))
    with EngineHarness(seeded, docs) as h:
        h.tick()
        assert h.status("pay", "team-a").reason == Reason.NOT_OWNER
        lam = seeded.client("lambda")
        arn = lam.get_function_configuration(FunctionName=FUNCTION)["FunctionArn"]
        lam.tag_resource(Resource=arn, Tags={OWNER_TAG: "team-b team-a"})
        # The refused rollout is retried with backoff and re-reads the owner tag when it is.
        h.drive(promoted(h, "pay", "team-a"), step=10)
    assert alias_routing(seeded, FUNCTION, "live") == ("2", {})


def test_with_an_ownership_config_a_namespace_not_listed_is_refused(aws: Emulator, docs: Path) -> None:
    aws.seed_function(FUNCTION, versions=2)
    aws.seed_function("search-api", versions=2)
    for function in (FUNCTION, "search-api"):
        aws.client("lambda").create_alias(FunctionName=function, Name="live", FunctionVersion="1")
    policy = OwnershipPolicy({"payments": ("pay-*",), "search": ("arn:aws:lambda:*:*:function:search-*",)})
    write(docs, document("payments"), "payments.yaml")
    aws.client("lambda").create_alias(FunctionName=FUNCTION, Name="beta", FunctionVersion="1")
    write(docs, document("search", alias="beta", name="steal"), "steal.yaml")  # search may not move pay-api
    stranger = rollout_document("s", function="search-api", version="2", strategy=canary(50, 1), namespace="other")
    write(docs, stranger, "stranger.yaml")  # a namespace the config does not list
    aws.clear_calls()
    with EngineHarness(aws, docs, ownership=policy) as h:
        h.drive(promoted(h, "pay", "payments"))
        for name, namespace in (("steal", "search"), ("s", "other")):
            status = h.status(name, namespace)
            assert (status.phase, status.reason) == (Phase.INVALID, Reason.NOT_OWNER), status
        assert "search-api" in h.status("s", "other").message and "namespace other" in h.status("s", "other").message
    assert alias_routing(aws, "search-api", "live") == ("1", {})
    assert alias_writes(aws, FUNCTION, "beta") == []
    assert [
        c for c in aws.calls() if "search-api" in str(c.params) and c.operation in ("TagResource", "UpdateAlias")
    ] == []


def test_a_managed_function_is_not_taken_over_from_another_namespace(aws: Emulator, docs: Path) -> None:
    aws.seed_function(FUNCTION, versions=2)
    lam = aws.client("lambda")
    lam.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="1")
    lam.create_alias(FunctionName=FUNCTION, Name="beta", FunctionVersion="1")
    write(docs, document("team-a"), "a.yaml")
    with EngineHarness(aws, docs) as h:
        h.drive(promoted(h, "pay", "team-a"))
        tags_before = function_tags(aws, FUNCTION)
        aws.clear_calls()
        write(docs, document("team-b", alias="beta", name="grab"), "b.yaml")
        h.reload()
        for _ in range(3):
            h.tick(5)
        status = h.status("grab", "team-b")
        assert (status.phase, status.reason) == (Phase.INVALID, Reason.NOT_OWNER)
        assert "already managed by team-a/pay" in status.message
    assert alias_writes(aws, FUNCTION, "beta") == []
    assert write_calls(aws) == []
    assert function_tags(aws, FUNCTION) == tags_before


def test_an_invalid_ownership_config_is_a_usage_error(
    aws: Emulator, docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ownership.yaml"
    config.write_text("payments:\n  - pay-*\n  - 7\n")
    args = ["run", "--once", f"--source={docs}", f"--ownership-config={config}", f"--aws-endpoint-url={aws.url}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{config}:3: payments[1]: expected a function name or ARN pattern (a string), got int" in err
    assert aws.calls() == []
