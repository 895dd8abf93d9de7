"""Where a rollout's function lives: ``spec.aws`` against the ``--accounts`` config, and the config itself.

The rules of ``controller.document.accounts.resolve``: the config's role for a namespace cannot be
left by a document (another role, another external ID: refused), a document chooses its region,
and without a config a document may name any role. The loader reports every problem with its line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.document.accounts import AccountsConfig, Refused, Scope, load_accounts, resolve
from controller.document.loader import parse_rollout
from controller.document.model import AwsTarget

PAYMENTS_ROLE = "arn:aws:iam::111111111111:role/lambda-rollouts"
OTHER_ROLE = "arn:aws:iam::222222222222:role/lambda-rollouts"
CONFIG = AccountsConfig(
    namespaces={
        "payments": Scope(role_arn=PAYMENTS_ROLE, external_id="pay-7", region="eu-west-1"),
        "search": Scope(region="us-west-2"),
    },
    source="accounts.yaml",
)


@pytest.mark.parametrize(
    ("namespace", "aws", "expected"),
    [
        # The namespace's entry when the document says nothing.
        ("payments", None, Scope(PAYMENTS_ROLE, "pay-7", "eu-west-1")),
        # Repeating the entry's role (and external ID) is fine; the document picks the region.
        ("payments", AwsTarget(role_arn=PAYMENTS_ROLE, region="us-east-1"), Scope(PAYMENTS_ROLE, "pay-7", "us-east-1")),
        (
            "payments",
            AwsTarget(role_arn=PAYMENTS_ROLE, external_id="pay-7"),
            Scope(PAYMENTS_ROLE, "pay-7", "eu-west-1"),
        ),
        ("payments", AwsTarget(region="ap-southeast-2"), Scope(PAYMENTS_ROLE, "pay-7", "ap-southeast-2")),
        # A listed namespace without a role: the controller's own account, in the entry's region.
        ("search", None, Scope(region="us-west-2")),
        ("search", AwsTarget(region="eu-central-1"), Scope(region="eu-central-1")),
        # Not listed: the controller's own credentials and region.
        ("default", None, Scope()),
        ("default", AwsTarget(region="eu-west-3"), Scope(region="eu-west-3")),
    ],
)
def test_scopes_from_the_config_and_the_document(namespace: str, aws: AwsTarget | None, expected: Scope) -> None:
    scope = resolve(aws, namespace=namespace, config=CONFIG)
    assert scope == expected
    assert isinstance(scope, Scope) and scope.external_id == expected.external_id


@pytest.mark.parametrize(
    ("namespace", "aws", "path", "words"),
    [
        ("payments", AwsTarget(role_arn=OTHER_ROLE), "spec.aws.roleArn", "namespace payments's role is"),
        ("payments", AwsTarget(role_arn=PAYMENTS_ROLE, external_id="guess"), "spec.aws.externalId", "leave it out"),
        ("search", AwsTarget(role_arn=OTHER_ROLE), "spec.aws.roleArn", "namespace search may assume no role"),
        ("default", AwsTarget(role_arn=PAYMENTS_ROLE), "spec.aws.roleArn", "namespace default may assume no role"),
    ],
)
def test_a_document_cannot_leave_its_namespaces_role(namespace: str, aws: AwsTarget, path: str, words: str) -> None:
    refused = resolve(aws, namespace=namespace, config=CONFIG)
    assert isinstance(refused, Refused)
    assert refused.path == path
    assert words in refused.message
    assert "pay-7" not in str(refused)


def test_without_a_config_the_document_says() -> None:
    aws = AwsTarget(role_arn=OTHER_ROLE, external_id="x-1", region="eu-west-1")
    assert resolve(aws, namespace="anyone", config=None) == Scope(OTHER_ROLE, "x-1", "eu-west-1")
    assert resolve(None, namespace="anyone", config=None) == Scope()
    assert Scope(OTHER_ROLE).account == "222222222222"
    assert Scope().account == "default"


def test_the_config_file_is_read_with_external_ids_from_env_and_file(tmp_path: Path) -> None:
    secret = tmp_path / "search-id"
    secret.write_text("search-external-1\n")
    file = tmp_path / "accounts.yaml"
    file.write_text(
        f"payments:\n  roleArn: {PAYMENTS_ROLE}\n  externalIdFrom: {{env: PAY_ID}}\n  region: eu-west-1\n"
        f"search:\n  roleArn: {OTHER_ROLE}\n  externalIdFrom: {{file: {secret}}}\n"
        "platform:\n  region: us-west-2\n"
    )
    config, errors = load_accounts(str(file), environ={"PAY_ID": "pay-7"})
    assert errors == []
    assert config is not None
    assert config.namespaces == {
        "payments": Scope(PAYMENTS_ROLE, "pay-7", "eu-west-1"),
        "search": Scope(OTHER_ROLE, "search-external-1", None),
        "platform": Scope(region="us-west-2"),
    }
    assert config.namespaces["search"].external_id == "search-external-1"


def test_every_problem_of_the_config_at_once(tmp_path: Path) -> None:
    file = tmp_path / "accounts.yaml"
    file.write_text(
        "Payments:\n  roleArn: arn:aws:iam::1:user/x\n"  # 1-2
        "search:\n  region: mars-1\n  colour: blue\n"  # 3-5
        "platform:\n  externalId: lonely-id\n"  # 6-7
        f"ops:\n  roleArn: {PAYMENTS_ROLE}\n  externalIdFrom: {{env: MISSING}}\n"  # 8-10
        f"both:\n  roleArn: {PAYMENTS_ROLE}\n  externalId: a-1\n  externalIdFrom: {{env: X}}\n"  # 11-14
    )
    config, errors = load_accounts(str(file), environ={})
    assert config is None
    text = [str(e).replace(str(file), "F") for e in errors]
    assert text == [
        "F:1: Payments: 'Payments' is not a valid namespace (lowercase letters, digits and -)",
        "F:2: Payments.roleArn: 'arn:aws:iam::1:user/x' is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
        "F:4: search.region: 'mars-1' is not an AWS region (such as eu-west-1)",
        "F:5: search.colour: unknown field (known: roleArn, externalId, externalIdFrom, region)",
        "F:7: platform.externalId: an external ID is only sent when assuming a role; set roleArn too",
        "F:10: ops.externalIdFrom: environment variable MISSING is not set",
        "F:14: both.externalIdFrom: give externalId or externalIdFrom, not both",
    ]


def test_spec_aws_in_a_document() -> None:
    document = {
        "apiVersion": "lambda.rollouts.dev/v1alpha1",
        "kind": "LambdaRollout",
        "metadata": {"name": "brand-api", "namespace": "payments"},
        "spec": {
            "functionName": "arn:aws:lambda:eu-west-1:111111111111:function:brand-api",
            "alias": "prod",
            "version": "2",
            "strategy": {"allAtOnce": {}},
            "aws": {"roleArn": OTHER_ROLE, "region": "us-east-1", "externalId": "x-1"},
        },
    }
    spec, errors = parse_rollout(document, default_namespace="default")
    assert spec is None
    assert sorted(f"{e.path}: {e.message}" for e in errors) == [
        "spec.aws.region: us-east-1 is not the region of spec.functionName (eu-west-1)",
        "spec.aws.roleArn: a role of account 222222222222, but spec.functionName is in account 111111111111",
    ]
    document["spec"]["functionName"] = "brand-api"  # type: ignore[index]
    spec, errors = parse_rollout(document, default_namespace="default")
    assert errors == []
    assert spec is not None and spec.aws == AwsTarget(role_arn=OTHER_ROLE, external_id="x-1", region="us-east-1")
    document["spec"]["aws"] = {"externalId": "x-1"}  # type: ignore[index]
    _, errors = parse_rollout(document, default_namespace="default")
    assert [f"{e.path}: {e.message}" for e in errors] == [
        "spec.aws.externalId: an external ID is only sent when assuming a role; set roleArn too"
    ]
