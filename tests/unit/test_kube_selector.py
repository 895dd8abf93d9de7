"""``operator --selector``: the apiserver's label selector syntax, matched against a resource's labels."""

from __future__ import annotations

import pytest

from controller.kube.selector import Selector

LABELS = {"shard": "a", "team": "payments", "lambda-rollouts.dev/tier": "gold"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("shard=a", True),
        ("shard==a", True),
        ("shard=b", False),
        ("shard!=b", True),
        ("shard!=a", False),
        ("missing!=x", True),
        ("team in (payments, search)", True),
        ("team in (search)", False),
        ("team notin (search,ops)", True),
        ("missing notin (x)", True),
        ("shard", True),
        ("missing", False),
        ("!missing", True),
        ("!shard", False),
        ("shard=a,team in (payments,search),!missing", True),
        ("shard=a, team=search", False),
        ("lambda-rollouts.dev/tier=gold", True),
        ("shard=", False),
    ],
)
def test_selectors_match_as_the_apiserver_does(text: str, matches: bool) -> None:
    assert Selector.parse(text).matches(LABELS) is matches


@pytest.mark.parametrize("text", ["", " , ", "shard=a=b", "team in ()", "team in (a b)", "shard >= 2", "-x=a"])
def test_what_is_not_a_selector_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Selector.parse(text)


def test_each_selector_names_a_lease_of_its_own() -> None:
    a, b = Selector.parse("shard=a"), Selector.parse("shard=b")
    assert a.lease_name("lambda-rollouts-leader") != b.lease_name("lambda-rollouts-leader")
    assert a.lease_name("lambda-rollouts-leader") == Selector.parse("shard=a").lease_name("lambda-rollouts-leader")
    assert a.lease_name("lambda-rollouts-leader").startswith("lambda-rollouts-leader-")


def test_the_operator_takes_the_shards_lease_unless_one_is_named() -> None:
    from controller.cli import build_parser
    from controller.commands.operator import lease_settings, selector_from_args

    parser = build_parser()
    plain = parser.parse_args(["operator"])
    assert lease_settings(plain, selector_from_args(plain)).name == "lambda-rollouts-leader"
    shard = parser.parse_args(["operator", "--selector", "shard=a"])
    assert lease_settings(shard, selector_from_args(shard)).name == Selector.parse("shard=a").lease_name(
        "lambda-rollouts-leader"
    )
    named = parser.parse_args(["operator", "--selector", "shard=a", "--lease-name", "payments-leader"])
    assert lease_settings(named, selector_from_args(named)).name == "payments-leader"
