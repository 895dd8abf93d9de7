"""Ownership: pattern matching, the judgement (tag > managed marker > config > allowed), the NotOwner
rule in ``decide`` (Invalid, nothing written, record untouched) and the ownership config's loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from controller.core.decide import decide
from controller.core.ownership import OWNER_TAG, Ownership, matches, owner_namespaces, refusal
from controller.core.reasons import Reason
from controller.core.types import AliasRouting, Observed, Phase, Record, Request, Verb, VersionInfo
from controller.document.model import Analysis, CanaryStrategy, RolloutSpec, SetWeight
from controller.document.ownership_config import OwnershipPolicy, load_ownership

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:pay-api"


# ---- patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("pay-api", True),
        ("pay-*", True),
        ("pay-?pi", True),
        ("pay-[ab]pi", True),
        ("Pay-*", False),  # case-sensitive, like Lambda's names
        ("payments-*", False),
        ("*", True),
        ("arn:aws:lambda:eu-west-1:123456789012:function:pay-*", True),
        ("arn:aws:lambda:eu-west-1:123456789012:function:*", True),
        ("arn:aws:lambda:us-east-1:123456789012:function:pay-*", False),  # other region
        ("arn:aws:lambda:eu-west-1:999999999999:function:pay-*", False),  # other account
    ],
)
def test_pattern_matches_the_name_or_for_arn_patterns_the_arn(pattern: str, expected: bool) -> None:
    assert matches(pattern, name="pay-api", arn=ARN) is expected


def test_an_arn_pattern_never_matches_without_an_arn_and_a_name_pattern_never_matches_the_arn() -> None:
    assert not matches("arn:aws:lambda:*:*:function:pay-*", name="pay-api", arn="")
    assert not matches("arn:aws:*", name="pay-api", arn="")
    assert not matches("123456789012", name="pay-api", arn=ARN)


def test_owner_tag_names_one_namespace_or_several_separated_by_spaces() -> None:
    assert owner_namespaces("payments") == ("payments",)
    assert owner_namespaces(" payments  billing ") == ("payments", "billing")
    assert owner_namespaces("") == ()


# ---- the judgement ---------------------------------------------------------------------------


def judge(namespace: str, facts: Ownership, function: str = "pay-api") -> str | None:
    return refusal(namespace=namespace, function=function, facts=facts)


def test_no_tag_no_marker_no_config_allows_everyone() -> None:
    assert judge("anyone", Ownership(arn=ARN)) is None


def test_owner_tag_decides_alone_whatever_the_config_says() -> None:
    config_allows_a = ("pay-*",)
    why = judge("a", Ownership(owner_tag="b", allowed=config_allows_a, arn=ARN))
    assert why is not None
    assert "namespace a" in why and "pay-api" in why and "owned by namespace b" in why
    assert f"{OWNER_TAG} tag" in why and "add a to that tag" in why
    # A tagged owner needs no config entry, and a namespace among several is enough.
    assert judge("b", Ownership(owner_tag="b", allowed=(), arn=ARN)) is None
    assert judge("b", Ownership(owner_tag="a b", allowed=(), arn=ARN)) is None


def test_an_empty_owner_tag_allows_no_namespace() -> None:
    why = judge("a", Ownership(owner_tag=""))
    assert why is not None and "owned by namespace none" in why


def test_a_function_managed_for_another_namespace_is_not_taken_over() -> None:
    facts = Ownership(managers=("a/pay",), arn=ARN)
    why = judge("b", facts)
    assert why is not None
    assert "already managed by a/pay" in why and "namespace b" in why and f"{OWNER_TAG}=b" in why
    # Its own namespace goes on (another rollout on another alias, or the same one), even with a config.
    assert judge("a", facts) is None
    assert judge("a", Ownership(managers=("a/pay", "a/pay-beta"), allowed=("pay-*",))) is None
    # The config does not override the marker; the owner tag does.
    assert judge("b", Ownership(managers=("a/pay",), allowed=("*",), arn=ARN)) is not None
    assert judge("b", Ownership(owner_tag="b", managers=("a/pay",), arn=ARN)) is None


def test_with_a_config_the_namespace_needs_a_matching_pattern() -> None:
    assert judge("payments", Ownership(allowed=("pay-*",), arn=ARN)) is None
    unlisted = judge("search", Ownership(allowed=(), arn=ARN))
    assert unlisted is not None and "it lists no pattern" in unlisted and "namespace search" in unlisted
    other = judge("search", Ownership(allowed=("search-*", "idx-*"), arn=ARN))
    assert other is not None
    assert "(search-*, idx-*) do not match" in other and "add a pattern for it under search" in other


def test_a_function_given_as_an_arn_is_judged_by_its_name() -> None:
    assert judge("payments", Ownership(allowed=("pay-*",), arn=ARN), function=ARN) is None
    why = judge("payments", Ownership(owner_tag="b"), function=f"{ARN}:prod")
    assert why is not None and "function pay-api " in why


# ---- the rule in decide ----------------------------------------------------------------------

SPEC = RolloutSpec(
    namespace="a",
    name="pay",
    function_name="pay-api",
    alias="prod",
    strategy=CanaryStrategy(steps=(SetWeight(50),)),
    version="2",
)
VERSIONS = {v: VersionInfo(v, role="r") for v in ("1", "2")}


def observed(ownership: Ownership, **kw: object) -> Observed:
    fields: dict[str, object] = {"alias_read": True, "alias": AliasRouting("1"), "versions": VERSIONS, **kw}
    return Observed(ownership=ownership, **fields)  # type: ignore[arg-type]


def test_not_owner_on_first_sight_is_invalid_and_writes_nothing() -> None:
    decision = decide(SPEC, None, observed(Ownership(owner_tag="b")), 100.0)
    assert decision.status.phase is Phase.INVALID
    assert decision.status.reason == Reason.NOT_OWNER
    assert "namespace a" in decision.status.message and "pay-api" in decision.status.message
    assert decision.status.errors == (decision.status.message,)
    assert decision.actions == () and not decision.record_changed and not decision.read_alias
    assert decision.events and decision.events[0].warning


def test_allowed_rollout_proceeds_as_before() -> None:
    decision = decide(SPEC, None, observed(Ownership(owner_tag="a")), 100.0)
    assert decision.status.phase is Phase.PROGRESSING and decision.actions


def test_not_owner_mid_rollout_freezes_everything_even_a_rollback_or_a_request() -> None:
    record = Record(
        spec_hash="x",
        phase=Phase.PROGRESSING,
        stable="1",
        canary="2",
        weight=50,
        step_index=1,
        step_started_at=50.0,
        started_at=50.0,
    )
    abort = Request(id="r1", verb=Verb.ABORT, at=90.0)
    seen = observed(
        Ownership(owner_tag="b"), alias=AliasRouting("1", "2", 0.5), request=abort, alarms_in_alarm=frozenset({"x"})
    )
    spec = dataclasses.replace(SPEC, analysis=Analysis(alarms=("x",)))
    decision = decide(spec, record, seen, 100.0)
    assert decision.status.reason == Reason.NOT_OWNER
    assert decision.actions == () and decision.record == record and not decision.record_changed


def test_a_config_without_the_namespace_refuses_it() -> None:
    decision = decide(SPEC, None, observed(Ownership(allowed=())), 100.0)
    assert decision.status.reason == Reason.NOT_OWNER and decision.actions == ()


# ---- the config file -------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ownership.yaml"
    path.write_text(text)
    return str(path)


def test_a_valid_config_loads_every_namespace(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "# who may move what\n"
        'payments: ["payments-*", "arn:aws:lambda:eu-west-1:123456789012:function:pay-*"]\n'
        "search:\n  - search-api\n  - idx-[0-9]*\n"
        "empty: []\n",
    )
    policy, errors = load_ownership(file)
    assert errors == []
    assert policy == OwnershipPolicy(
        namespaces={
            "payments": ("payments-*", "arn:aws:lambda:eu-west-1:123456789012:function:pay-*"),
            "search": ("search-api", "idx-[0-9]*"),
            "empty": (),
        },
        source=file,
    )
    assert policy.patterns_for("search") == ("search-api", "idx-[0-9]*")
    assert policy.patterns_for("unlisted") == ()


def test_every_problem_comes_back_at_once_with_file_line_and_path(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "payments:\n"
        "  - pay-*\n"
        "  - arn:aws:lambda:eu-west-1:123456789012:function:pay-api:prod\n"  # line 3: qualified
        "  - 42\n"  # line 4
        "Bad_Namespace: [x]\n"  # line 5
        "search: search-api\n"  # line 6: not a list
        "other: [a]\n"
        "other: [b]\n",  # line 8: duplicate
    )
    policy, errors = load_ownership(file)
    assert policy is None
    text = [str(e) for e in errors]
    assert text[0].startswith(f"{file}:3: payments[1]: 'arn:aws:lambda:eu-west-1:123456789012:function:pay-api:prod'")
    assert "is not a function ARN pattern" in text[0]
    assert text[1] == f"{file}:4: payments[2]: expected a function name or ARN pattern (a string), got int"
    assert text[2] == (
        f"{file}:5: Bad_Namespace: 'Bad_Namespace' is not a valid namespace (lowercase letters, digits and -)"
    )
    assert text[3] == f"{file}:6: search: expected a list of function name or ARN patterns, got a string"
    assert text[4] == f"{file}:8: other: duplicate key (first given at line 7)"
    assert len(text) == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ": empty: expected a mapping of namespace to function patterns"),
        ("- pay-*\n", ":1: expected a mapping of namespace to function patterns, got a list"),
        ("payments: [pay-*\n", ":2: yaml: "),
        ("a: [x]\n---\nb: [y]\n", ":3: more than one YAML document: the config is one mapping"),
        ("apiVersion: lambda.rollouts.dev/v1alpha1\nkind: LambdaRollout\n", ":2: kind: this is a LambdaRollout"),
        ("payments: [pay api]\n", ":1: payments[0]: 'pay api' is not a function name pattern"),
    ],
)
def test_malformed_configs_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    file = write(tmp_path, text)
    policy, errors = load_ownership(file)
    assert policy is None and errors
    assert str(errors[0]).startswith(file + expected), str(errors[0])


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    policy, errors = load_ownership(str(tmp_path / "nope.yaml"))
    assert policy is None and "No such file or directory" in str(errors[0])


def test_the_shipped_example_config_loads() -> None:
    example = Path(__file__).parents[2] / "examples" / "config" / "ownership.yaml"
    policy, errors = load_ownership(str(example))
    assert errors == [] and policy is not None
    assert policy.patterns_for("payments")[0] == "payments-*"
