"""Rollouts partitioned by scope, shards of scopes, and one alias name in two accounts.

``partition`` is what ``ScopedEngines`` hands each scope's engine: every rollout once, in the scope
its document and ``--accounts`` give it, a refused ``spec.aws`` held (Invalid) in its namespace's
own scope, and nothing of a scope another shard serves.
"""

from __future__ import annotations

import pytest

from controller.document.accounts import AccountsConfig, Scope
from controller.document.model import AllAtOnceStrategy, AwsTarget, RolloutSpec
from controller.runtime.desired import DesiredState, Entry, desired_state
from controller.runtime.scopes import Scopes, Shard, partition

ROLE_A = "arn:aws:iam::111111111111:role/lambda-rollouts"
ROLE_B = "arn:aws:iam::222222222222:role/lambda-rollouts"
SCOPES = Scopes(
    region="us-east-1",
    accounts=AccountsConfig(
        namespaces={"payments": Scope(role_arn=ROLE_A, external_id="pay-7", region="eu-west-1")},
        source="accounts.yaml",
    ),
)
OWN = Scope(region="us-east-1")
PAYMENTS = Scope(role_arn=ROLE_A, external_id="pay-7", region="eu-west-1")


def spec(namespace: str, name: str, *, aws: AwsTarget | None = None, function: str = "api") -> RolloutSpec:
    return RolloutSpec(
        namespace=namespace, name=name, function_name=function, alias="live", strategy=AllAtOnceStrategy(), aws=aws
    )


def state(*specs: RolloutSpec, held: dict[str, tuple[str, ...]] | None = None) -> DesiredState:
    return DesiredState(rollouts={s.key: s for s in specs}, held=held or {})


def test_rollouts_go_to_their_scope() -> None:
    specs = (
        spec("payments", "a"),
        spec("payments", "b", aws=AwsTarget(region="us-west-2")),
        spec("default", "c"),
        spec("default", "d", aws=AwsTarget(region="eu-central-1")),
    )
    parts = partition(state(*specs), scopes=SCOPES)
    assert {scope: sorted(part.rollouts) for scope, part in parts.items()} == {
        PAYMENTS: ["payments/a"],
        Scope(role_arn=ROLE_A, external_id="pay-7", region="us-west-2"): ["payments/b"],
        OWN: ["default/c"],
        Scope(region="eu-central-1"): ["default/d"],
    }
    assert all(not part.held for part in parts.values())


def test_a_refused_role_is_held_in_the_namespaces_own_scope() -> None:
    parts = partition(
        state(
            spec("payments", "a", aws=AwsTarget(role_arn=ROLE_B)), spec("default", "b", aws=AwsTarget(role_arn=ROLE_A))
        ),
        scopes=SCOPES,
    )
    assert list(parts[PAYMENTS].held["payments/a"]) == [
        f"spec.aws.roleArn: {ROLE_B} is not allowed: namespace payments's role is {ROLE_A} (accounts.yaml)"
    ]
    assert parts[OWN].held["default/b"][0].startswith("spec.aws.roleArn: ")
    # A document already held for its own errors keeps them, the refusal added.
    parts = partition(
        state(spec("payments", "a", aws=AwsTarget(role_arn=ROLE_B)), held={"payments/a": ("spec.version: bad",)}),
        scopes=SCOPES,
    )
    assert parts[PAYMENTS].held["payments/a"][0] == "spec.version: bad"


def test_a_shard_keeps_only_its_scopes() -> None:
    desired = state(
        spec("payments", "a"), spec("default", "b"), spec("default", "c", aws=AwsTarget(region="eu-west-1"))
    )
    assert set(partition(desired, scopes=SCOPES, serves=Shard.parse("111111111111").serves)) == {PAYMENTS}
    assert set(partition(desired, scopes=SCOPES, serves=Shard.parse("default/eu-west-1").serves)) == {
        Scope(region="eu-west-1")
    }
    assert set(partition(desired, scopes=SCOPES, serves=Shard.parse("default").serves)) == {
        OWN,
        Scope(region="eu-west-1"),
    }


@pytest.mark.parametrize("text", ["1234", "default/mars", "111111111111/", "all", ""])
def test_shard_names_are_checked(text: str) -> None:
    with pytest.raises(ValueError, match="ACCOUNT"):
        Shard.parse(text)


def test_each_shard_has_its_own_lease_name() -> None:
    assert Shard.parse("111111111111").lease_name("default") == "default/111111111111"
    assert Shard.parse("111111111111/eu-west-1").lease_name("prod") == "prod/111111111111/eu-west-1"
    assert Shard.parse("default").lease_name("default") == "default/default"


def test_one_alias_name_in_two_accounts_is_no_duplicate() -> None:
    entries = [
        Entry("payments/api", spec("payments", "api")),
        Entry("default/api", spec("default", "api")),
        Entry("default/api-2", spec("default", "api-2")),
    ]
    desired = desired_state(entries, placement=SCOPES.placement)
    # payments/api is in account 111111111111; the two in the controller's own account collide.
    assert set(desired.held) == {"default/api", "default/api-2"}
    assert "also rolled out by default/api-2" in desired.held["default/api"][0]


def test_the_scopes_run_without_a_rollout() -> None:
    assert SCOPES.always() == [OWN, PAYMENTS]
    assert Scopes(region="eu-west-1").always() == [Scope(region="eu-west-1")]
