"""The Kubernetes source: which resources the engine manages, and which it holds."""

from __future__ import annotations

from typing import Any

from controller.kube.source import ResourceSource


def resource(name: str, *, function: str = "brand-api", alias: str = "prod") -> dict[str, Any]:
    return {
        "apiVersion": "lambda.rollouts.dev/v1alpha1",
        "kind": "LambdaRollout",
        "metadata": {"name": name, "namespace": "payments", "uid": f"uid-{name}", "generation": 1},
        "spec": {"functionName": function, "alias": alias, "version": "2", "strategy": {"allAtOnce": {}}},
    }


def test_two_resources_on_one_function_alias_are_both_held_naming_each_other() -> None:
    source = ResourceSource()
    source.seen(resource("brand-api"))
    source.seen(resource("brand-api-copy"))
    source.seen(resource("other", alias="live"))

    desired = source.desired()

    assert set(desired.rollouts) == {"payments/brand-api", "payments/brand-api-copy", "payments/other"}
    assert desired.held == {
        "payments/brand-api": ("spec.alias: brand-api:prod is also rolled out by payments/brand-api-copy",),
        "payments/brand-api-copy": ("spec.alias: brand-api:prod is also rolled out by payments/brand-api",),
    }


def test_removing_one_of_the_two_releases_the_other() -> None:
    source = ResourceSource()
    source.seen(resource("brand-api"))
    source.seen(resource("brand-api-copy"))
    source.gone("payments", "brand-api-copy")

    assert source.desired().held == {}
