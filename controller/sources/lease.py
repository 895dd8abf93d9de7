"""One writer per GitOps directory: a lease in DynamoDB that replicas on any host can hold.

GitOps mode runs outside Kubernetes (a VM, a CI runner, two hosts for availability), so it cannot
use a ``coordination.k8s.io`` Lease; and two ``run`` processes on one directory would fight
(with ``driftPolicy: Revert`` each takes the other's alias writes for drift and reverts them). The
lease is one item in a DynamoDB table, written only with conditional writes: the standard AWS lock
(the Amazon DynamoDB Lock Client's algorithm), shaped like client-go's leader election
(``controller.kube.lease``). DynamoDB rather than a holder field in the durable record: the record
is one per function, the writer is one per directory, and a conditional write on one item is the one
compare-and-swap AWS gives every account without another service to run.

The item holds the holder's identity (host, pid and a random token, unique per process), the
lease duration it promises to honour, and a *record version number* that the holder replaces on
every write. The rules, with ``lease_duration`` D > ``renew_deadline`` > ``retry_period``:

1. **Acquire.** A free lease (no item, or one released: empty holder) is taken with a write
   conditional on what was read (``attribute_not_exists`` / the version read). Of two racing
   contenders DynamoDB lets exactly one write succeed; the other gets
   ``ConditionalCheckFailedException`` and stays a standby.
2. **Renew.** The holder writes a fresh version every ``retry_period``, conditional on still being
   the holder. It may write to AWS only until ``renew_deadline`` after it *sent* its last
   successful renewal (``may_write`` compares that instant with its own monotonic clock, so the
   answer is exact even when the event loop is late); at that instant it steps down by itself:
   ``leading`` is cleared and ``on_lost`` stops every writer.
3. **Take over.** A contender reads the item every ``retry_period`` (strongly consistent) and notes,
   on its own monotonic clock, when it first saw the current version. Only once it has seen that
   same version for the item's whole lease duration may it take over, with a write conditional on
   that version: if the holder renewed meanwhile, the condition fails and the wait starts again.
   No clocks are compared between hosts: each host only measures intervals on its own clock.

Why one writer at every instant: a renewal sent at instant s makes the holder stop at
s + renew_deadline. Any contender saw the version of that renewal (or a later one) only after it was
written, so after s; it takes over no earlier than s + D. The holder stopped D - renew_deadline
(a third of D: 5 s at the default 15 s) before the new holder's first write may leave; a write the
holder sent just before its deadline has that long to land. The deadline is checked again right
before every HTTP attempt of a Lambda write (``controller.aws.calls.WriteFence``), so a write that
waited for a budget token or botocore's retries is not sent late. A holder that renewed with a
condition that failed has been taken over: it steps down at once.

Bounds, with R = ``retry_period``: after the holder dies without releasing (SIGKILL, a host lost), a
standby takes over between D - R and D + 2R later (it saw the last version at most R after it was
written and looks every R), plus two round trips; 15 s to 19 s at the defaults, 2.6 s to 3.8 s at
``--lease-duration 3``. A clean stop (SIGTERM) releases the lease after the writes in flight
finished, and a standby takes it at its next look, within R. A holder cut off from DynamoDB stops
writing renew_deadline after its last renewal was sent, before anyone may take over.

A standby makes no AWS write at all: it keeps reading its source so it can take over at once, and
says who holds the lease, since when, in its log (once per holder) and on ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from controller.aws.dynamodb import DynamoDbAdapter, LeaseRecord
from controller.aws.errors import AwsError, Conflict

logger = logging.getLogger("controller.lease")

DEFAULT_TABLE = "lambda-rollouts-leases"
DEFAULT_NAME = "default"


@dataclass(frozen=True)
class LeaseSettings:
    table: str = DEFAULT_TABLE
    name: str = DEFAULT_NAME
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # ``--lease auto`` creates the table when it is missing; ``--lease TABLE`` needs an existing one.
    create_table: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("a lease needs 0 < retry_period < renew_deadline < lease_duration")

    @classmethod
    def scaled(
        cls, lease_duration: float, *, table: str = DEFAULT_TABLE, name: str = DEFAULT_NAME, create_table: bool = True
    ) -> LeaseSettings:
        """client-go's proportions (15 s / 10 s / 2 s) for ``lease_duration``."""
        return cls(
            table=table,
            name=name,
            lease_duration=lease_duration,
            renew_deadline=lease_duration * 2 / 3,
            retry_period=lease_duration * 2 / 15,
            create_table=create_table,
        )


@dataclass(frozen=True)
class Identity:
    """Who holds a lease: the host and pid people read, and a token that makes every process unique."""

    host: str
    pid: int
    token: str

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"

    @classmethod
    def of_this_process(cls) -> Identity:
        return cls(host=socket.gethostname(), pid=os.getpid(), token=uuid.uuid4().hex[:8])


class LeaseStore(Protocol):
    """Where one lease item lives; every write but ``read`` raises ``Conflict`` when its condition fails."""

    async def read(self) -> LeaseRecord | None: ...

    async def put(self, record: LeaseRecord, *, replacing: str | None) -> None:
        """Write ``record`` if there is no item (``replacing`` None) or its version is ``replacing``."""

    async def renew(self, *, holder: str, version: str, renewed_at: float) -> None:
        """Set a fresh ``version`` if ``holder`` still holds the lease."""

    async def release(self, *, holder: str, version: str) -> None:
        """Empty the holder if ``holder`` still holds the lease."""


class TableStore:
    """A ``LeaseStore`` over one item of a DynamoDB table."""

    def __init__(self, dynamodb: DynamoDbAdapter, *, table: str, name: str) -> None:
        self._dynamodb = dynamodb
        self.table = table
        self.name = name

    async def open(self, *, create: bool) -> None:
        """The table exists and is ACTIVE (created first when missing and ``create``)."""
        await self._dynamodb.ensure_table(self.table, create=create)

    async def read(self) -> LeaseRecord | None:
        return await self._dynamodb.read_lease(self.table, self.name)

    async def put(self, record: LeaseRecord, *, replacing: str | None) -> None:
        await self._dynamodb.put_lease(self.table, record, replacing=replacing)

    async def renew(self, *, holder: str, version: str, renewed_at: float) -> None:
        await self._dynamodb.renew_lease(
            self.table, name=self.name, holder=holder, version=version, renewed_at=renewed_at
        )

    async def release(self, *, holder: str, version: str) -> None:
        await self._dynamodb.release_lease(self.table, name=self.name, holder=holder, version=version)


def describe_holder(record: LeaseRecord) -> str:
    """``host (pid N)``: the holder as a person looks for it."""
    return f"{record.host} (pid {record.pid})" if record.host else record.holder


def _stamp(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GitOpsLease:
    """Campaigns for one lease and keeps ``leading`` set exactly while this process may write."""

    def __init__(
        self,
        store: LeaseStore,
        *,
        identity: Identity,
        settings: LeaseSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        new_version: Callable[[], str] = lambda: uuid.uuid4().hex,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.identity = identity
        self.settings = settings or LeaseSettings()
        self.leading = asyncio.Event()
        # Set after the first round: leadership is known either way (held by us or by someone else).
        self.known = asyncio.Event()
        # Set by the owner of the writers: stops them the moment this process steps down.
        self.on_lost = on_lost
        # The item as last read or written: who holds the lease, since when (logs, /readyz).
        self.seen: LeaseRecord | None = None
        self._store = store
        self._clock = clock
        self._wall_clock = wall_clock
        self._new_version = new_version
        # True from a successful acquire or renew until the step-down; writes also need the deadline.
        self._holding = False
        self._valid_until = 0.0
        self._deadline_timer: asyncio.TimerHandle | None = None
        # The contender's view: the version last seen and when it was first seen (our clock).
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self._waiting_logged: str | None = None
        # Why the last round failed to reach the table (None: it answered).
        self._failing: str | None = None

    # ---- what the rest of the process asks ----------------------------------------------------

    def may_write(self) -> bool:
        """True while this process holds the lease and its renew deadline has not passed.

        Cheap and thread-safe: the write fence calls it from the thread sending each request.
        """
        return self._holding and self._clock() < self._valid_until

    @property
    def is_leader(self) -> bool:
        return self.may_write()

    def waiting_reason(self) -> str | None:
        """Why this process does not write (None while it leads): for ``/readyz`` and the log."""
        if self.is_leader:
            return None
        name = self.settings.name
        seen = self.seen
        if not self.known.is_set():
            return f"lease {name}: not read yet"
        if self._failing is not None:
            return f"lease {name}: the lease table does not answer ({self._failing}); not writing"
        if seen is None or not seen.holder:
            return f"lease {name} is free; taking it"
        if seen.holder == self.identity.id:
            return f"lease {name}: renewing it failed; not writing"
        return f"{self.held_by()}; waiting"

    def held_by(self) -> str | None:
        """``lease NAME is held by HOST (pid N) since TIME`` while another process holds it, else None."""
        seen = self.seen
        if seen is None or not seen.holder or seen.holder == self.identity.id:
            return None
        return f"lease {self.settings.name} is held by {describe_holder(seen)} since {_stamp(seen.acquired_at)}"

    # ---- the campaign -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire or renew every ``retry_period`` until ``stop``; then release the lease if held."""
        try:
            while not stop.is_set():
                if not await self.try_acquire_or_renew():
                    self._announce_holder()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.retry_period):
                        await stop.wait()
        finally:
            await self.release()
            self._disarm()

    async def acquire(self) -> bool:
        """For one pass (``run --once``): True once held; False as soon as another holder is seen alive.

        A free lease is taken at once. One held by a process that no longer renews it is taken over
        after a lease duration; one whose holder renews it (its version changes) is not.
        """
        first_seen: str | None = None
        deadline = self._clock() + 2 * self.settings.lease_duration
        while self._clock() < deadline:
            if await self.try_acquire_or_renew():
                return True
            seen = self.seen
            if seen is not None and seen.holder and seen.holder != self.identity.id:
                if first_seen is not None and seen.version != first_seen:
                    return False
                first_seen = first_seen or seen.version
            await asyncio.sleep(self.settings.retry_period)
        return False

    async def try_acquire_or_renew(self) -> bool:
        """One round; returns whether this process may write afterwards."""
        started = self._clock()  # before anything is sent: the deadline counts from the send
        try:
            won = await self._attempt()
        except (AwsError, OSError) as exc:
            if self._failing is None:
                logger.warning("lease %s: %s", self.settings.name, exc)
            self._failing = str(exc)
            won = False
        else:
            if self._failing is not None:
                logger.info("lease %s: the lease table answers again", self.settings.name)
            self._failing = None
        if won:
            self._renewed(started)
        self.expire_if_due()
        self.known.set()
        return self.is_leader

    async def _attempt(self) -> bool:
        me = self.identity.id
        if self._holding:
            return await self._renew(me)
        record = await self._store.read()
        now = self._clock()
        self.seen = record
        if record is None or not record.holder:
            return await self._take(record, why="the lease is free")
        if record.holder == me:
            # Still ours: we stepped down on a missed deadline and nobody took it over since.
            return await self._renew(me)
        seen = (record.holder, record.version)
        if seen != self._observed:
            self._observed, self._observed_at = seen, now
        unchanged = now - self._observed_at
        if unchanged < record.duration:
            return False
        return await self._take(record, why=f"{describe_holder(record)} did not renew it for {unchanged:.1f}s")

    async def _renew(self, me: str) -> bool:
        version = self._new_version()
        renewed_at = self._wall_clock()
        try:
            await self._store.renew(holder=me, version=version, renewed_at=renewed_at)
        except Conflict:
            self._step_down("another process took the lease over")
            with contextlib.suppress(AwsError, OSError):
                self.seen = await self._store.read()
            return False
        if self.seen is not None:
            self.seen = replace(self.seen, version=version, renewed_at=renewed_at)
        return True

    async def _take(self, record: LeaseRecord | None, *, why: str) -> bool:
        now = self._wall_clock()
        taken = LeaseRecord(
            name=self.settings.name,
            holder=self.identity.id,
            version=self._new_version(),
            duration=self.settings.lease_duration,
            host=self.identity.host,
            pid=self.identity.pid,
            acquired_at=now,
            renewed_at=now,
            transitions=(record.transitions + 1) if record is not None else 0,
        )
        try:
            await self._store.put(taken, replacing=record.version if record is not None else None)
        except Conflict:
            return False  # another contender won this round, or the holder renewed just now
        self.seen = taken
        level = logging.WARNING if record is not None and record.holder else logging.INFO
        logger.log(level, "lease %s: acquired (%s); this process writes now", self.settings.name, why)
        return True

    def _renewed(self, started: float) -> None:
        self._holding = True
        self._valid_until = started + self.settings.renew_deadline
        self._observed, self._waiting_logged = None, None
        if self.may_write():
            self.leading.set()
            self._arm()

    # ---- stepping down -----------------------------------------------------------------------

    def expire_if_due(self) -> None:
        """Step down once the renew deadline has passed (the timer calls it; each round does too)."""
        if self._holding and self._clock() >= self._valid_until:
            deadline = self.settings.renew_deadline
            self._step_down(f"the lease was not renewed within its renew deadline ({deadline:.1f}s)")
        elif self._holding:
            self._arm()

    def _arm(self) -> None:
        """A timer at the renew deadline: ``on_lost`` runs on time even while a renewal hangs."""
        self._disarm()
        with contextlib.suppress(RuntimeError):  # no running loop (a caller outside asyncio)
            loop = asyncio.get_running_loop()
            self._deadline_timer = loop.call_later(max(0.0, self._valid_until - self._clock()), self.expire_if_due)

    def _disarm(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def _step_down(self, why: str, *, level: int = logging.WARNING) -> None:
        was_leading = self.leading.is_set()
        self._holding = False
        self._disarm()
        self.leading.clear()
        if was_leading:
            logger.log(level, "lease %s: stopped writing: %s", self.settings.name, why)
            if self.on_lost is not None:
                self.on_lost()

    async def release(self) -> None:
        """Clean shutdown: stop writing first, then give the lease up so a standby takes it at once.

        Also when this process already stopped writing on a missed deadline but the item still names it.
        """
        held = self._holding or (self.seen is not None and self.seen.holder == self.identity.id)
        self._step_down("shutting down", level=logging.INFO)
        if not held:
            return
        try:
            await self._store.release(holder=self.identity.id, version=self._new_version())
        except Conflict:
            return  # not ours any more
        except (AwsError, OSError) as exc:
            # Not fatal: a standby takes over once the lease duration has passed.
            logger.warning(
                "lease %s: could not release it (%s); a standby takes over within %.0fs",
                self.settings.name,
                exc,
                self.settings.lease_duration,
            )
            return
        logger.info("lease %s: released", self.settings.name)

    def _announce_holder(self) -> None:
        """Log once per holder who holds the lease while this process waits."""
        record = self.seen
        if record is None or not record.holder or record.holder == self.identity.id:
            return
        if self._waiting_logged == record.holder:
            return
        self._waiting_logged = record.holder
        logger.info(
            "%s (controllers for different directories in one account need different --lease-name)",
            self.waiting_reason(),
        )


class LeaseHeld(Exception):
    """``run --once`` found the lease held by a controller that is alive: it does not run its pass."""


class SoleWriter:
    """``--lease off``: a single replica that knows it is alone; it always writes."""

    def __init__(self) -> None:
        self.leading = asyncio.Event()
        self.leading.set()
        self.known = asyncio.Event()
        self.known.set()
        self.on_lost: Callable[[], None] | None = None

    def may_write(self) -> bool:
        return True

    @property
    def is_leader(self) -> bool:
        return True

    def waiting_reason(self) -> str | None:
        return None

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class Leadership(Protocol):
    """What the GitOps daemon needs of a lease (``GitOpsLease``, or ``SoleWriter`` for ``--lease off``)."""

    leading: asyncio.Event
    known: asyncio.Event
    on_lost: Callable[[], None] | None

    def may_write(self) -> bool: ...

    @property
    def is_leader(self) -> bool: ...

    def waiting_reason(self) -> str | None: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    async def acquire(self) -> bool: ...

    async def release(self) -> None: ...


__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_TABLE",
    "GitOpsLease",
    "Identity",
    "Leadership",
    "LeaseSettings",
    "LeaseStore",
    "SoleWriter",
    "TableStore",
    "describe_holder",
]
