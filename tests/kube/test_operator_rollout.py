"""The operator end to end on a real kube-apiserver, as the controller's own ServiceAccount.

``lambda-rollouts operator`` runs as a subprocess with a TokenRequest token of the ServiceAccount
``lambda-rollouts/lambda-rollouts``, bound by the RBAC of ``kubectl kustomize manifests/`` and nothing
else, against the strict AWS emulator. What a user sees (``kubectl get lro``, ``.status``, Events,
``kubectl lambda-rollouts``) is checked against what AWS really did (the emulator's alias and its
call log, where every call carries the operator's own access key). People act with their own
credentials: a ServiceAccount bound to the ``lambda-rollouts-operator`` ClusterRole in the test's
namespace drives the rollout through the kubectl plugin, one bound to ``lambda-rollouts-viewer`` may not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from controller.emulator import Emulator
from tests.integration.helpers import (
    WRITE_OPERATIONS,
    alias_routing,
    canary,
    cli_env,
    put_errors_alarm,
    rollout_document,
    seed_alias,
    write_calls,
    written_weights,
)
from tests.kube.controlplane import ControlPlane
from tests.kube.operators import (
    OperatorProcess,
    apply_rollout,
    binding,
    events,
    eventually,
    kubectl_as_user,
    operator,
    phase_is,
    rollout,
    status_of,
)

FUNCTION, ALIAS = "orders", "live"
FINALIZER = "lambda.rollouts.dev/revert-on-deletion"
REQUEST = "lambda.rollouts.dev/request"


def document(namespace: str, version: str, strategy: dict[str, Any], **spec: Any) -> dict[str, Any]:
    doc = rollout_document(FUNCTION, function=FUNCTION, alias=ALIAS, version=version, strategy=strategy)
    doc["metadata"]["namespace"] = namespace
    doc["spec"].update(spec)
    return doc


def table(output: str) -> list[dict[str, str]]:
    """kubectl's table output as rows keyed by header; columns are cut where the header words start
    (an empty cell, as CANARY with no canary, would shift a whitespace split)."""
    header, *rows = output.splitlines()
    names = header.split()
    starts = [header.index(name) for name in names]
    ends = [*starts[1:], None]
    return [
        {name: row[start:end].strip() for name, start, end in zip(names, starts, ends, strict=True)} for row in rows
    ]


def aws_writes_by(aws: Emulator, process: OperatorProcess) -> list[str]:
    return [c.operation for c in aws.calls() if c.operation in WRITE_OPERATIONS and c.access_key == process.access_key]


def person(plane: ControlPlane, namespace: str, name: str, cluster_role: str) -> Path:
    """A kubeconfig of ServiceAccount ``namespace/name``, bound to ``cluster_role`` in ``namespace`` only."""
    kubeconfig = plane.service_account_kubeconfig(namespace, name)
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    rolebinding = binding("RoleBinding", cluster_role, role_kind="ClusterRole", subject=subject, namespace=namespace)
    rolebinding["metadata"]["name"] = name
    plane.kubectl("apply", "-f", "-", input=json.dumps(rolebinding))
    return kubeconfig


def test_a_canary_walks_to_healthy_with_status_events_columns_and_the_plugin(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=3)
    aws.clear_calls()
    release_manager = person(control_plane, namespace, "release-manager", "lambda-rollouts-operator")
    viewer = person(control_plane, namespace, "viewer", "lambda-rollouts-viewer")

    with operator(kubeconfig=controller_kubeconfig, aws=aws, directory=tmp_path) as op:
        apply_rollout(control_plane, document(namespace, "2", canary(20, 1, 50, None)))
        eventually(phase_is(control_plane, namespace, FUNCTION, "Paused"), what="Paused at 50%")

        # The printer columns, as `kubectl get lro` prints them: step 4 of 5 is the pause until promote.
        (row,) = table(control_plane.kubectl("get", "lro", "-n", namespace).stdout)
        assert list(row) == ["NAME", "PHASE", "FUNCTION", "STABLE", "CANARY", "WEIGHT", "STEP", "STEPS", "AGE"]
        assert {k: v for k, v in row.items() if k != "AGE"} == {
            "NAME": FUNCTION,
            "PHASE": "Paused",
            "FUNCTION": FUNCTION,
            "STABLE": "1",
            "CANARY": "2",
            "WEIGHT": "50",
            "STEP": "4",
            "STEPS": "5",
        }
        assert row["AGE"].endswith("s")
        (wide,) = table(control_plane.kubectl("get", "lro", "-n", namespace, "-o", "wide").stdout)
        assert wide["REASON"] == "WaitingForPromote"

        # Status went through the /status subresource: the spec's generation never moved, and the
        # managed fields name the operator as the writer of .status, through that subresource only.
        obj = rollout(control_plane, namespace, FUNCTION, managed_fields=True)
        assert obj is not None
        assert obj["metadata"]["generation"] == 1
        assert obj["status"]["observedGeneration"] == 1
        writers = [m for m in obj["metadata"]["managedFields"] if m["manager"] == "lambda-rollouts (op-a)"]
        assert [(m.get("subresource"), sorted(m["fieldsV1"])) for m in writers] == [("status", ["f:status"])]

        # One Event per transition (a change of phase), on the resource, by the controller.
        seen = events(control_plane, namespace)
        assert [e["reason"] for e in seen] == ["RolloutStarted", "WeightShifted", "WaitingForPromote"]
        for event in seen:
            assert event["type"] == "Normal"
            assert event["involvedObject"] == {
                "apiVersion": "lambda.rollouts.dev/v1alpha1",
                "kind": "LambdaRollout",
                "name": FUNCTION,
                "namespace": namespace,
                "uid": obj["metadata"]["uid"],
            }
            assert (event["source"]["component"], event["reportingComponent"]) == ("lambda-rollouts", "lambda-rollouts")
            assert event["reportingInstance"] == "op-a"
        assert "50%" in seen[-1]["message"]

        # A viewer may look but not promote: RBAC refuses the plugin's patch.
        refused = kubectl_as_user(
            "lambda-rollouts", "promote", FUNCTION, "-n", namespace, kubeconfig=viewer, home=tmp_path / "v"
        )
        assert refused.returncode == 1
        assert 'cannot patch resource "lambdarollouts"' in refused.stderr, refused.stderr
        looked = kubectl_as_user(
            "lambda-rollouts", "get", FUNCTION, "-n", namespace, kubeconfig=viewer, home=tmp_path / "v"
        )
        assert looked.returncode == 0 and f"{namespace}/{FUNCTION}: Paused" in looked.stdout, looked.stderr

        # The release manager's promote goes through the resource and the operator carries it out.
        promoted = kubectl_as_user(
            "lambda-rollouts", "promote", FUNCTION, "-n", namespace, kubeconfig=release_manager, home=tmp_path / "rm"
        )
        assert promoted.returncode == 0, promoted.stderr
        assert promoted.stdout.startswith(f"promote requested for {FUNCTION}")
        eventually(phase_is(control_plane, namespace, FUNCTION, "Healthy"), what="Healthy")
        (row,) = table(control_plane.kubectl("get", "lro", "-n", namespace).stdout)
        assert (row["PHASE"], row["STABLE"], row["CANARY"], row["WEIGHT"], row["STEP"], row["STEPS"]) == (
            "Healthy", "2", "", "0", "5", "5",
        )  # fmt: skip
        status = status_of(control_plane, namespace, FUNCTION)
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Ready": "True",
            "Progressing": "False",
            "Degraded": "False",
        }
        requested = [h for h in status["history"] if h["outcome"] == "Requested"]
        assert [(h["reason"], h["by"]) for h in requested] == [
            ("promote", f"system:serviceaccount:{namespace}:release-manager")
        ]
        # The handled request is cleared from the resource (by the operator, a JSON patch with a test).
        eventually(
            lambda: (
                REQUEST
                not in ((rollout(control_plane, namespace, FUNCTION) or {})["metadata"].get("annotations") or {})
            ),
            what="the request annotation to go",
        )
        after = [(e["reason"], e["type"]) for e in events(control_plane, namespace)][3:]
        assert after == [("Request", "Normal"), ("Promoting", "Normal"), ("Promoted", "Normal")]
        assert op.ready()

    assert alias_routing(aws, FUNCTION, ALIAS) == ("2", {})
    assert written_weights(aws, FUNCTION, ALIAS) == [("2", 0.2), ("2", 0.5), (None, 0.0)]
    # Every AWS write was the operator's own (its access key), none by anyone else.
    assert aws_writes_by(aws, op) == write_calls(aws)


def plugin(*args: str, kubeconfig: Path, home: Path) -> str:
    done = kubectl_as_user("lambda-rollouts", *args, kubeconfig=kubeconfig, home=home)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_abort_a_spec_change_and_undo_through_the_plugin(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=3)
    admin = control_plane.admin_kubeconfig
    with operator(kubeconfig=controller_kubeconfig, aws=aws, directory=tmp_path):
        apply_rollout(control_plane, document(namespace, "2", canary(10, None)))
        eventually(phase_is(control_plane, namespace, FUNCTION, "Paused"), what="Paused at 10%")
        assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.1})

        plugin("abort", FUNCTION, "-n", namespace, kubeconfig=admin, home=tmp_path / "admin")
        eventually(phase_is(control_plane, namespace, FUNCTION, "RolledBack"), what="aborted")
        assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})
        assert status_of(control_plane, namespace, FUNCTION)["reason"] == "Aborted"
        # The spec changes right away, perhaps while the reconcile after the abort is still in
        # flight: the quiet skip remembers the inputs the reconcile began with, so it is acted on.
        # A new spec is a new generation; the status says which one it was computed from.
        control_plane.kubectl(
            "patch", "lro", FUNCTION, "-n", namespace, "--type=merge",
            "-p", json.dumps({"spec": {"version": "3", "strategy": {"canary": None, "allAtOnce": {}}}}),
        )  # fmt: skip
        eventually(lambda: status_of(control_plane, namespace, FUNCTION).get("stableVersion") == "3", what="version 3")
        obj = rollout(control_plane, namespace, FUNCTION)
        assert obj is not None
        assert (obj["metadata"]["generation"], obj["status"]["observedGeneration"]) == (2, 2)
        assert obj["status"]["phase"] == "Healthy"

        plugin("undo", FUNCTION, "-n", namespace, kubeconfig=admin, home=tmp_path / "admin")
        eventually(lambda: alias_routing(aws, FUNCTION, ALIAS) == ("1", {}), what="undone to version 1")
        eventually(phase_is(control_plane, namespace, FUNCTION, "RolledBack"), what="Undone")
        status = status_of(control_plane, namespace, FUNCTION)
        assert status["reason"] == "Undone"
        # Who asked is recorded: the user the apiserver authenticated, as the plugin found it.
        assert [(h["version"], h["outcome"], h["by"]) for h in status["history"]] == [
            ("2", "Aborted", "test-admin"),
            ("3", "Promoted", ""),
            ("3", "Undone", "test-admin"),
        ]
        described = plugin("get", FUNCTION, "-n", namespace, kubeconfig=admin, home=tmp_path / "admin")
        assert described.startswith(f"{namespace}/{FUNCTION}: RolledBack")


def test_revert_on_deletion_holds_a_finalizer_only_while_asked_and_reverts_on_delete(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=3)

    def finalizers() -> list[str]:
        return list(((rollout(control_plane, namespace, FUNCTION) or {}).get("metadata") or {}).get("finalizers") or [])

    def revert_on_deletion(value: bool) -> None:
        patch = json.dumps({"spec": {"revertOnDeletion": value}})
        control_plane.kubectl("patch", "lro", FUNCTION, "-n", namespace, "--type=merge", "-p", patch)

    with operator(kubeconfig=controller_kubeconfig, aws=aws, directory=tmp_path):
        apply_rollout(control_plane, document(namespace, "2", canary(30, None), revertOnDeletion=True))
        eventually(phase_is(control_plane, namespace, FUNCTION, "Paused"), what="Paused at 30%")
        eventually(lambda: finalizers() == [FINALIZER], what="the finalizer")

        revert_on_deletion(False)
        eventually(lambda: finalizers() == [], what="the finalizer to go")
        revert_on_deletion(True)
        eventually(lambda: finalizers() == [FINALIZER], what="the finalizer again")
        assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.3})

        control_plane.kubectl("delete", "lro", FUNCTION, "-n", namespace, "--wait=false")
        eventually(lambda: rollout(control_plane, namespace, FUNCTION) is None, what="the object to be released")
        assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})
        aborted = [e for e in events(control_plane, namespace) if e["reason"] == "Aborted"]
        assert [e["type"] for e in aborted] == ["Warning"] and "revertOnDeletion" in aborted[0]["message"]


def get_records(aws: Emulator) -> dict[str, dict[str, Any]]:
    """``lambda-rollouts get -o json``: the rollouts as the durable records on the functions say."""
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", "get", "-o", "json"],
        env=cli_env(aws),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {row["name"]: row for row in json.loads(done.stdout)}


def test_a_resource_deleted_mid_rollout_is_orphaned_and_applying_it_again_resumes(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=3)
    key = f"{namespace}/{FUNCTION}"
    doc = document(namespace, "2", canary(30, None, 60, None))
    with operator(kubeconfig=controller_kubeconfig, aws=aws, directory=tmp_path):
        apply_rollout(control_plane, doc)
        eventually(phase_is(control_plane, namespace, FUNCTION, "Paused"), what="Paused at 30%")
        assert rollout(control_plane, namespace, FUNCTION)["metadata"].get("finalizers") is None  # type: ignore[index]

        control_plane.kubectl("delete", "lro", FUNCTION, "-n", namespace)  # no finalizer: gone at once
        record = eventually(
            lambda: get_records(aws).get(key, {}).get("phase") == "Orphaned" and get_records(aws)[key], what="Orphaned"
        )
        assert (record["weight"], record["step"]) == (30, 2)
        assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.3})  # left exactly as it was
        writes = written_weights(aws, FUNCTION, ALIAS)

        apply_rollout(control_plane, doc)
        eventually(phase_is(control_plane, namespace, FUNCTION, "Paused"), what="resumed")
        status = status_of(control_plane, namespace, FUNCTION)
        assert (status["canaryWeight"], status["currentStep"], status["steps"]) == (30, 2, 5)
        assert written_weights(aws, FUNCTION, ALIAS) == writes  # resumed where it was, not restarted
        assert get_records(aws)[key]["phase"] == "Paused"
        resumed = [e["reason"] for e in events(control_plane, namespace)][-2:]
        assert resumed == ["ManagementResumed", "WaitingForPromote"]


def test_an_alarm_rolls_back_with_its_name_in_status_and_a_warning_event(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=3)
    put_errors_alarm(aws.client("cloudwatch"), "orders-errors", function=FUNCTION, TreatMissingData="notBreaching")
    aws.set_behaviour(FUNCTION, "2", error_rate=1.0)  # the canary fails every call
    doc = document(namespace, "2", canary(50, None), analysis={"alarms": ["orders-errors"]})

    def callers_invoke_until_rolled_back() -> bool:
        # Callers keep invoking the alias: every alarm period has the canary's errors in it until
        # the rollback takes the canary out of the routing.
        aws.traffic(FUNCTION, ALIAS, count=20)
        return phase_is(control_plane, namespace, FUNCTION, "RolledBack")()

    with operator(kubeconfig=controller_kubeconfig, aws=aws, directory=tmp_path):
        apply_rollout(control_plane, doc)
        eventually(phase_is(control_plane, namespace, FUNCTION, "Paused"), what="Paused")
        eventually(callers_invoke_until_rolled_back, what="RolledBack")
        status = status_of(control_plane, namespace, FUNCTION)
        assert status["reason"] == "AlarmFired"
        assert {c["type"]: c["status"] for c in status["conditions"]}["Degraded"] == "True"
        assert [(h["version"], h["outcome"], h["reason"]) for h in status["history"]] == [
            ("2", "RolledBack", "AlarmFired")
        ]
        (fired,) = [e for e in events(control_plane, namespace) if e["reason"] == "AlarmFired"]
        assert fired["type"] == "Warning" and "orders-errors" in fired["message"]

        # Deleted and applied again (a GitOps prune and replace): the failed version is not retried.
        writes = written_weights(aws, FUNCTION, ALIAS)
        control_plane.kubectl("delete", "lro", FUNCTION, "-n", namespace)
        apply_rollout(control_plane, doc)
        eventually(
            lambda: (
                rollout(control_plane, namespace, FUNCTION) is not None
                and status_of(control_plane, namespace, FUNCTION).get("observedGeneration") == 1
                and status_of(control_plane, namespace, FUNCTION).get("phase") == "RolledBack"
            ),
            what="RolledBack again",
        )
        assert written_weights(aws, FUNCTION, ALIAS) == writes
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})


def test_what_the_apiserver_refuses_never_reaches_the_operator_and_what_it_accepts_is_judged(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=2)
    aws.clear_calls()
    # The schema's maximum: the apiserver refuses the object (kmock stored it and left it to the operator).
    refused = control_plane.kubectl(
        "apply", "-f", "-", input=json.dumps(document(namespace, "2", canary(150, 5))), check=False
    )
    assert refused.returncode != 0
    assert "spec.strategy.canary.steps[0].setWeight: Invalid value: 150" in refused.stderr, refused.stderr
    with operator(kubeconfig=controller_kubeconfig, aws=aws, directory=tmp_path):
        # Valid for the schema, but version 7 does not exist: only the operator can tell.
        apply_rollout(control_plane, document(namespace, "7", canary(20, 5)))
        eventually(phase_is(control_plane, namespace, FUNCTION, "Invalid"), what="Invalid")
        status = status_of(control_plane, namespace, FUNCTION)
        assert status["errors"] == ["version 7 of orders does not exist"]
        assert status["reason"] == "VersionNotFound"
        assert [e["type"] for e in events(control_plane, namespace)] == ["Warning"]
    assert write_calls(aws) == []
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})


def test_a_rollout_in_a_namespace_the_ownership_config_does_not_allow_is_not_owner(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=2)
    aws.clear_calls()
    config = tmp_path / "ownership.yaml"
    config.write_text("payments: [orders]\n")  # only namespace payments may move orders
    extra = [f"--ownership-config={config}"]
    with operator(kubeconfig=controller_kubeconfig, aws=aws, directory=tmp_path, extra_args=extra):
        apply_rollout(control_plane, document(namespace, "2", canary(50, 1)))
        eventually(phase_is(control_plane, namespace, FUNCTION, "Invalid"), what="Invalid")
        status = status_of(control_plane, namespace, FUNCTION)
    assert status["reason"] == "NotOwner"
    assert f"namespace {namespace}" in status["message"] and FUNCTION in status["message"]
    assert write_calls(aws) == []
