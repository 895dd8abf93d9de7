"""The emulator's ``AssumeRole`` decides as AWS does, and serves each account apart.

Against the strict emulator over HTTP: a role is assumed only when it exists and its trust policy
names the caller with every condition met (the external ID above all), the credentials it hands out
land in the role's account, and the fault proxy can throttle one account while another goes free.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from controller.emulator import Emulator
from controller.emulator.proxy import FaultProxy, Quota

OTHER = "111111111111"
THIRD = "222222222222"


def assume(aws: Emulator, role: str, **kwargs: object) -> dict[str, str]:
    response = aws.client("sts").assume_role(RoleArn=role, RoleSessionName="lambda-rollouts-test", **kwargs)
    return dict(response["Credentials"])


def signed(aws: Emulator, service: str, credentials: dict[str, str]) -> Any:
    return boto3.client(
        service,
        endpoint_url=aws.url,
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def refused(aws: Emulator, role: str, **kwargs: object) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        assume(aws, role, **kwargs)
    error = caught.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def test_the_credentials_of_an_assumed_role_act_in_its_account(aws: Emulator) -> None:
    aws.seed_function("theirs", versions=1, account=OTHER)
    aws.seed_function("ours", versions=1)
    role = aws.trusting_role("deployer", account=OTHER, external_id="tenant-7")
    credentials = assume(aws, role, ExternalId="tenant-7")
    names = [f["FunctionName"] for f in signed(aws, "lambda", credentials).list_functions()["Functions"]]
    assert names == ["theirs"]
    listing = [c for c in aws.calls() if c.operation == "ListFunctions"]
    assert [c.account for c in listing] == [OTHER]
    identity = signed(aws, "sts", credentials).get_caller_identity()
    assert identity["Account"] == OTHER
    assert identity["Arn"] == f"arn:aws:sts::{OTHER}:assumed-role/deployer/lambda-rollouts-test"


def test_a_wrong_or_missing_external_id_is_refused(aws: Emulator) -> None:
    role = aws.trusting_role("deployer", account=OTHER, external_id="tenant-7")
    code, message = refused(aws, role, ExternalId="tenant-8")
    assert code == "AccessDenied"
    assert message == (
        f"User: arn:aws:iam::123456789012:user/moto is not authorized to perform: sts:AssumeRole on resource: {role}"
    )
    assert refused(aws, role)[0] == "AccessDenied"
    assert assume(aws, role, ExternalId="tenant-7")["AccessKeyId"]


def test_a_role_that_does_not_exist_or_trusts_someone_else_is_refused(aws: Emulator) -> None:
    assert refused(aws, f"arn:aws:iam::{OTHER}:role/nobody")[0] == "AccessDenied"
    elsewhere = aws.trusting_role("deployer", account=OTHER, trusted=THIRD)
    assert refused(aws, elsewhere)[0] == "AccessDenied"
    # Without a condition, the trusted account's principals need no external ID.
    open_role = aws.trusting_role("open", account=OTHER)
    assert assume(aws, open_role)["AccessKeyId"]


def test_session_names_and_durations_are_checked(aws: Emulator) -> None:
    role = aws.trusting_role("deployer", account=OTHER)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        aws.client("sts").assume_role(RoleArn=role, RoleSessionName="has spaces")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert refused(aws, role, DurationSeconds=7200)[0] == "ValidationError"


def test_the_proxy_throttles_one_account_and_not_another(aws: Emulator) -> None:
    aws.seed_function("theirs", versions=1, account=OTHER)
    aws.seed_function("ours", versions=1)
    quota = Quota("lambda-control-plane", "lambda", rate=1.0, burst=1.0, account=OTHER)
    with FaultProxy.start(upstream=aws.url, quotas=[quota]) as proxy:
        once = Config(retries={"mode": "standard", "total_max_attempts": 1})
        key, secret = aws.credentials(OTHER)
        theirs = boto3.client(
            "lambda",
            endpoint_url=proxy.url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=once,
        )
        ours = boto3.client(
            "lambda",
            endpoint_url=proxy.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=once,
        )
        outcomes = {"theirs": 0, "ours": 0}
        for _ in range(5):
            for name, client in (("theirs", theirs), ("ours", ours)):
                try:
                    client.get_function(FunctionName=name)
                except botocore.exceptions.ClientError as error:
                    assert error.response["Error"]["Code"] == "TooManyRequestsException"
                    outcomes[name] += 1
        assert outcomes["ours"] == 0
        assert outcomes["theirs"] >= 3
