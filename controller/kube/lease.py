"""Leader election with a ``coordination.k8s.io/v1`` Lease: several replicas, exactly one writing.

Why a Lease and not kopf peering: kopf's peering pauses operators of *lower* priority, but two
replicas of one Deployment share a priority and kopf then only warns and lets both run; and peering
guards kopf's own handlers, while our writes (AWS aliases, tags, status, Events) happen in the
engine. A Lease is what Kubernetes controllers use (client-go's leaderelection), and its rules are
simple enough to state and test:

- the holder renews ``renewTime`` every ``retry_period``; a candidate takes the Lease only when
  it is free or the holder has not renewed it for ``lease_duration`` *as observed on the candidate's
  own clock* (the time it last saw the record change), so clock skew between nodes cannot make two
  leaders;
- every write is a PUT carrying the resourceVersion just read: of two candidates racing for the same
  Lease, the apiserver lets one win (409 for the other);
- a leader that cannot renew within ``renew_deadline`` (< ``lease_duration``) steps down *before*
  anyone else may take over, and the moment it steps down its ``leading`` event is cleared and
  ``on_lost`` runs: the caller cancels everything that writes;
- on a clean shutdown the leader releases the Lease (empty holder), so the standby takes over at
  its next retry instead of after a full lease duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.kube.api import ApiError, KubeApi

logger = logging.getLogger("controller.leader")


@dataclass(frozen=True)
class LeaseSettings:
    name: str = "lambda-rollouts-leader"
    namespace: str = "default"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")


class LeaderElector:
    """Campaigns for one Lease and keeps ``leading`` set exactly while this replica holds it."""

    def __init__(
        self,
        api: KubeApi,
        *,
        identity: str,
        settings: LeaseSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.identity = identity
        self.settings = settings or LeaseSettings()
        self.leading = asyncio.Event()
        self.known = asyncio.Event()  # set after the first attempt: leadership is known either way
        self._api = api
        self._clock = clock
        self._wall_clock = wall_clock
        # Set by the owner of the writers: cancels them the moment leadership is lost.
        self.on_lost = on_lost
        self._last_renewed = 0.0
        # The last failed round's error, said once (``_failed``); None while rounds succeed.
        self._problem: str | None = None
        # What we last saw of the Lease and when (our clock): the basis of "expired".
        self._observed: tuple[str, str, str] | None = None
        self._observed_at = 0.0
        self.holder: str | None = None

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    @property
    def _path(self) -> str:
        s = self.settings
        return f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases/{s.name}"

    async def run(self, stop: asyncio.Event) -> None:
        """Try to acquire or renew every ``retry_period`` until ``stop``; then release if leading."""
        try:
            while not stop.is_set():
                await self.try_acquire_or_renew()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.retry_period):
                        await stop.wait()
        finally:
            if self.is_leader:
                await self.release()

    async def try_acquire_or_renew(self) -> bool:
        """One election round; returns whether this replica leads afterwards."""
        try:
            won = await self._attempt()
        except (ApiError, OSError, TimeoutError) as exc:
            self._failed(exc)
            won = False
        else:
            if self._problem is not None:
                logger.info("lease %s: the apiserver answers again", self.settings.name)
                self._problem = None
        now = self._clock()
        if won:
            self._last_renewed = now
            if not self.is_leader:
                logger.info("became the leader (lease %s/%s)", self.settings.namespace, self.settings.name)
            self.leading.set()
        elif self.is_leader and now - self._last_renewed >= self.settings.renew_deadline:
            self._step_down("could not renew the lease within the renew deadline")
        self.known.set()
        return self.is_leader

    def _failed(self, exc: Exception) -> None:
        """Say a failed round once (again only when it changes), not every retry period: a refusal
        (403) lasts until someone changes the RBAC, and a line every two seconds would bury the log."""
        problem = str(exc)
        if problem == self._problem:
            logger.debug("lease %s: %s", self.settings.name, problem)
            return
        self._problem = problem
        if isinstance(exc, ApiError) and exc.status == 403:
            logger.error(
                "lease %s/%s refused, so this replica never leads: %s (the leader-election Role must grant "
                "get and update on this Lease by name, and create on leases)",
                self.settings.namespace,
                self.settings.name,
                exc,
            )
        else:
            logger.warning("lease %s: %s", self.settings.name, problem)

    async def _attempt(self) -> bool:
        try:
            lease = await self._api.get(self._path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return await self._create()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self._observe(lease)
        self.holder = holder or None
        if holder and holder != self.identity:
            if self.is_leader:
                # Someone else holds it now: we must already have lost it.
                self._step_down(f"the lease is held by {holder}")
            duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_duration)
            if self._clock() - self._observed_at < duration:
                return False
        return await self._update(lease, taking_over=holder != self.identity)

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        seen = (spec.get("holderIdentity") or "", str(spec.get("renewTime")), lease["metadata"]["resourceVersion"])
        if seen != self._observed:
            self._observed, self._observed_at = seen, self._clock()

    async def _create(self) -> bool:
        s = self.settings
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": self._spec(acquire=True, transitions=0),
        }
        try:
            await self._api.post(f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases", body)
        except ApiError as exc:
            if exc.status == 409:  # another replica created it first
                return False
            raise
        self.holder = self.identity
        return True

    async def _update(self, lease: dict[str, Any], *, taking_over: bool) -> bool:
        spec = lease.get("spec") or {}
        transitions = int(spec.get("leaseTransitions") or 0) + (1 if taking_over else 0)
        new_spec = self._spec(acquire=taking_over, transitions=transitions)
        if not taking_over:
            new_spec["acquireTime"] = spec.get("acquireTime") or new_spec["renewTime"]
        body = {**lease, "spec": new_spec}
        try:
            await self._api.put(self._path, body)
        except ApiError as exc:
            if exc.status == 409:  # the Lease changed since we read it: someone else won this round
                return False
            raise
        self.holder = self.identity
        return True

    def _spec(self, *, acquire: bool, transitions: int) -> dict[str, Any]:
        now = _micro_time(self._wall_clock())
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.settings.lease_duration)),
            "renewTime": now,
            "leaseTransitions": transitions,
        }
        if acquire:
            spec["acquireTime"] = now
        return spec

    def _step_down(self, why: str) -> None:
        if not self.is_leader:
            return
        logger.warning("stopped leading: %s", why)
        self.leading.clear()
        if self.on_lost is not None:
            self.on_lost()

    async def release(self) -> None:
        """Give the Lease up (clean shutdown): stop leading first, then clear the holder."""
        self._step_down("shutting down")
        try:
            lease = await self._api.get(self._path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            released = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1}
            await self._api.put(self._path, {**lease, "spec": released})
            logger.info("released the lease %s/%s", self.settings.namespace, self.settings.name)
        except (ApiError, OSError, TimeoutError) as exc:
            # Not fatal: the standby takes over once the lease duration has passed.
            logger.warning("could not release the lease: %s", exc)


def _micro_time(epoch: float) -> str:
    """Kubernetes ``MicroTime``: RFC 3339 with microseconds, UTC."""
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
