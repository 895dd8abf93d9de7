"""Leader election on the real apiserver: one writer, a takeover bounded by the Lease, a clean hand-over.

``controller/kube/lease.py`` rests on one property of the apiserver: a write carrying a stale
``resourceVersion`` is refused with 409 Conflict, so of two candidates racing for the Lease exactly
one wins. That is shown first, on the wire and with two electors racing round after round. Then
whole operator processes, each with its own AWS access key (which the emulator's call log records
on every call), so every AWS write is attributed to the process that made it: exactly one writes;
SIGKILL of the leader mid-canary is taken over once the Lease has expired, within bounds computed
from the Lease's own times; a SIGTERM hands over at once; and the emulator's alias writes, with
their times, show no step repeated or skipped and no pause shortened across both changes of leader.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from controller.emulator import Emulator
from controller.emulator.app import CallRecord
from controller.emulator.proxy import FaultProxy, FaultRule
from controller.kube.api import ApiError, Endpoint, KubeApi
from controller.kube.lease import LeaderElector, LeaseSettings
from tests.integration.helpers import WRITE_OPERATIONS, alias_writes, canary, rollout_document, seed_alias
from tests.kube.controlplane import ControlPlane
from tests.kube.operators import (
    CONTROLLER_NAMESPACE,
    LEASE_NAME,
    OperatorProcess,
    apply_rollout,
    events,
    eventually,
    holder,
    lease,
    operator,
    parse_micro_time,
    phase_is,
    status_of,
)

FUNCTION, ALIAS = "orders", "live"
LEASE_DURATION = 3.0  # --lease-duration: renew deadline 2 s, retry period 0.4 s (client-go's proportions)
RETRY_PERIOD = LEASE_DURATION * 2 / 15
PAUSE = 4.0  # longer than a takeover after SIGKILL, so the new leader has part of the pause left to wait
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{CONTROLLER_NAMESPACE}/leases"


def endpoint(plane: ControlPlane, kubeconfig: Path) -> Endpoint:
    (user,) = yaml.safe_load(kubeconfig.read_text())["users"]
    return Endpoint(server=plane.server, token=user["user"]["token"], ca_path=str(plane.ca_file))


class LockstepApi(KubeApi):
    """Holds every PUT until the other candidate's PUT is ready too: both carry what they read
    before either wrote, which is the race the resourceVersion has to settle."""

    def __init__(self, endpoint: Endpoint, barrier: asyncio.Barrier) -> None:
        super().__init__(endpoint)
        self._barrier = barrier

    async def put(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        await self._barrier.wait()
        return await super().put(path, body)


def always_expired() -> Iterator[float]:
    """A clock under which every Lease seen has expired by the next look: both candidates always try."""
    return itertools.count(0.0, 1000.0)


def test_the_apiserver_refuses_a_lease_write_carrying_a_stale_resource_version(
    control_plane: ControlPlane, controller_kubeconfig: Path
) -> None:
    async def scenario() -> None:
        async with KubeApi(endpoint(control_plane, controller_kubeconfig)) as api:
            body = {
                "metadata": {"name": LEASE_NAME, "namespace": CONTROLLER_NAMESPACE},
                "spec": {"holderIdentity": "x"},
            }
            created = await api.post(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **body})
            try:
                await api.post(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **body})
            except ApiError as exc:
                assert exc.status == 409  # AlreadyExists: of two creators one wins
            else:
                raise AssertionError("a second create of the Lease was accepted")
            path = f"{LEASES}/{LEASE_NAME}"
            renewed = await api.put(path, {**created, "spec": {"holderIdentity": "a"}})
            assert renewed["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
            try:
                await api.put(path, {**created, "spec": {"holderIdentity": "b"}})  # read before a's write
            except ApiError as exc:
                assert exc.status == 409 and "the object has been modified" in exc.message
            else:
                raise AssertionError("a PUT with a stale resourceVersion was accepted")
            assert (await api.get(path))["spec"]["holderIdentity"] == "a"

        # Two electors that always think the other's Lease expired race every round, their PUTs in
        # lockstep: the apiserver lets exactly one of them hold it after each round, never both.
        barrier = asyncio.Barrier(2)
        settings = LeaseSettings(name=LEASE_NAME, namespace=CONTROLLER_NAMESPACE)
        async with (
            KubeApi(endpoint(control_plane, controller_kubeconfig)) as api,
            LockstepApi(endpoint(control_plane, controller_kubeconfig), barrier) as api_a,
            LockstepApi(endpoint(control_plane, controller_kubeconfig), barrier) as api_b,
        ):
            electors = [
                LeaderElector(candidate, identity=name, settings=settings, clock=always_expired().__next__)
                for name, candidate in (("a", api_a), ("b", api_b))
            ]
            for _ in range(20):
                await asyncio.gather(*(e.try_acquire_or_renew() for e in electors))
                leading = [e.identity for e in electors if e.is_leader]
                assert leading == [(await api.get(path))["spec"]["holderIdentity"]], leading

    asyncio.run(scenario())


def writes_of(aws: Emulator, process: OperatorProcess) -> list[CallRecord]:
    return [c for c in aws.calls() if c.operation in WRITE_OPERATIONS and c.access_key == process.access_key]


def weights_and_times(aws: Emulator) -> list[tuple[float, str, float]]:
    """(time, access key, canary weight) of each alias write; the final switch has weight 0."""
    result = []
    for call in alias_writes(aws, FUNCTION, ALIAS):
        weights: dict[str, Any] = (call.params.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        result.append((call.timestamp, call.access_key, float(sum(weights.values()))))
    return result


def test_one_writer_a_sigkill_takes_a_lease_duration_and_a_sigterm_hands_over_at_once(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=3)
    aws.clear_calls()
    doc = rollout_document(FUNCTION, function=FUNCTION, version="2", strategy=canary(10, PAUSE, 40, PAUSE))
    doc["metadata"]["namespace"] = namespace
    common = {"kubeconfig": controller_kubeconfig, "aws": aws, "directory": tmp_path, "lease_duration": LEASE_DURATION}

    with operator(identity="op-a", **common) as a, operator(identity="op-b", **common) as b:
        eventually(lambda: holder(control_plane) in ("op-a", "op-b"), what="a leader")
        leader, standby = (a, b) if holder(control_plane) == "op-a" else (b, a)
        eventually(standby.ready, what="the standby to be ready")
        apply_rollout(control_plane, doc)
        eventually(lambda: len(weights_and_times(aws)) == 1, what="the first step")

        # SIGKILL mid-canary (in the first pause): no release, the standby waits for the Lease to expire.
        leader.kill()
        killed = time.time()
        last_renewal = parse_micro_time(lease(control_plane)["spec"]["renewTime"])  # type: ignore[index]
        assert writes_of(aws, standby) == []  # it wrote nothing while the other led
        eventually(lambda: holder(control_plane) == standby.identity, timeout=LEASE_DURATION * 3, what="takeover")
        taken = parse_micro_time(lease(control_plane)["spec"]["acquireTime"])  # type: ignore[index]
        # The standby counts the Lease's duration from when it saw the last renewal (its own clock):
        # never before the Lease expired, and within two retry periods of it.
        assert LEASE_DURATION <= taken - last_renewal <= LEASE_DURATION + 2 * RETRY_PERIOD + 0.5
        assert taken > killed

        with operator(identity="op-c", **common) as c:
            eventually(c.ready, what="op-c to stand by")
            eventually(lambda: len(weights_and_times(aws)) == 2, timeout=PAUSE * 3, what="the second step")
            # SIGTERM: the leader releases the Lease and op-c takes over at its next retry.
            assert writes_of(aws, c) == []
            standby.popen.send_signal(signal.SIGTERM)
            terminated = time.time()
            assert standby.popen.wait(10) == 0
            eventually(lambda: holder(control_plane) == "op-c", timeout=LEASE_DURATION, what="the hand-over")
            handed = parse_micro_time(lease(control_plane)["spec"]["acquireTime"])  # type: ignore[index]
            assert handed - terminated < LEASE_DURATION / 2  # well before the Lease would have expired
            eventually(phase_is(control_plane, namespace, FUNCTION, "Healthy"), timeout=PAUSE * 3, what="Healthy")
            assert writes_of(aws, c)

    # The alias writes: each step exactly once, in order, each by the leader of its time, and each
    # pause at least as long as declared, across the SIGKILL (first pause) and the SIGTERM (second).
    writes = weights_and_times(aws)
    assert [(key, weight) for _, key, weight in writes] == [
        (leader.access_key, 0.1),
        (standby.access_key, 0.4),
        (c.access_key, 0.0),
    ]
    gaps = [later - earlier for (earlier, _, _), (later, _, _) in itertools.pairwise(writes)]
    assert all(gap >= PAUSE for gap in gaps), gaps
    # Every AWS write of each replica falls inside its own term: never two writers at once.
    assert all(call.timestamp < killed for call in writes_of(aws, leader))
    assert all(taken <= call.timestamp < terminated for call in writes_of(aws, standby))
    assert all(call.timestamp >= handed for call in writes_of(aws, c))
    # Kubernetes writes too: the Events' reporting instance only ever moves on to the next leader.
    reporters = [e["reportingInstance"] for e in events(control_plane, namespace)]
    order = [leader.identity, standby.identity, "op-c"]
    assert [order.index(r) for r in reporters] == sorted(order.index(r) for r in reporters), reporters
    assert status_of(control_plane, namespace, FUNCTION)["stableVersion"] == "2"


def test_a_sigterm_during_an_alias_write_lets_it_finish_and_record_before_the_lease_goes(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=3)
    aws.clear_calls()
    slow = FaultRule("latency", service="lambda", operation="UpdateAlias", count=1, latency=2.0)
    doc = rollout_document(FUNCTION, function=FUNCTION, version="2", strategy=canary(20, None))
    doc["metadata"]["namespace"] = namespace
    with (
        FaultProxy.start(aws.url, rules=[slow]) as proxy,
        operator(kubeconfig=controller_kubeconfig, aws=aws, aws_url=proxy.url, directory=tmp_path) as op,
    ):
        apply_rollout(control_plane, doc)
        eventually(lambda: proxy.fault_counts().get("lambda:UpdateAlias:latency") == 1, what="the write in flight")
        op.popen.send_signal(signal.SIGTERM)
        assert op.popen.wait(15) == 0
    written = alias_writes(aws, FUNCTION, ALIAS)
    assert [c.params["RoutingConfig"] for c in written] == [{"AdditionalVersionWeights": {"2": 0.2}}]
    # The record on the function says the write is done (a tag write after it), and only then is the
    # Lease released: the engine had its grace, the elector kept the Lease meanwhile.
    tagged = [c.timestamp for c in aws.calls() if c.operation == "TagResource"]
    assert tagged and max(tagged) > written[0].timestamp
    released = op.when("released the lease")
    assert released > max(tagged)
    assert op.lines("cancelling") == []  # nothing of the engine was cancelled
    assert status_of(control_plane, namespace, FUNCTION)["canaryWeight"] == 20
    assert (lease(control_plane) or {})["spec"]["holderIdentity"] == ""
