"""The delivery queue with scripted channels and a fake clock: order, retries with full-jitter backoff,
Retry-After, give-up rules, the bounded queue, idempotent offers, ``pending()``, the observer and
``on_delivered``; and that ``offer`` never blocks nor raises whatever the channels and hooks do."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from controller.notify.channel import DeliveryError, Prepared
from controller.notify.config import DeliveryPolicy, NotificationConfig, Subscription, WebhookTarget
from controller.notify.delivery import Notifier, full_jitter
from controller.notify.http import parse_retry_after
from controller.notify.links import GateLinks, GateSigner
from controller.notify.transition import Transition, Trigger
from controller.observability.prometheus import Metrics

T0 = 1767225600.0


@dataclass
class Clock:
    now: float = T0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Recorder:
    targets: list[str] = field(default_factory=list)
    outcomes: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def notification_target(self, *, target: str) -> None:
        self.targets.append(target)

    def notification(self, *, target: str, outcome: str) -> None:
        self.outcomes.append((target, outcome))

    def notification_dropped(self, *, target: str) -> None:
        self.dropped.append(target)


class ScriptedChannel:
    """A channel whose attempts fail as scripted (an exception per attempt, None = delivered)."""

    def __init__(self, name: str, script: Iterable[BaseException | None] = (), *, clock: Clock | None = None) -> None:
        self._name = name
        self.script = list(script)
        self.clock = clock
        self.attempts: list[tuple[str, float]] = []
        self.delivered: list[str] = []
        self.links: list[GateLinks | None] = []
        self.gate = asyncio.Event()
        self.gate.set()

    @property
    def name(self) -> str:
        return self._name

    def describe(self) -> str:
        return "https://receiver.example.com/…"

    def prepare(self, transition: Transition, links: GateLinks | None) -> Prepared:
        self.links.append(links)
        return Prepared(transition=transition, body=transition.id.encode())

    async def deliver(self, prepared: Prepared) -> None:
        self.attempts.append((prepared.transition.id, self.clock() if self.clock else 0.0))
        await self.gate.wait()
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.delivered.append(prepared.transition.id)


def transition(number: int = 1, trigger: Trigger = Trigger.ROLLED_BACK, namespace: str = "payments") -> Transition:
    return Transition(
        namespace=namespace,
        name=f"api-{number}",
        function_name=f"api-{number}",
        alias="prod",
        trigger=trigger,
        attempt="1@1",
        at=T0,
    )


def config(*names: str, policy: DeliveryPolicy | None = None, **subscription: object) -> NotificationConfig:
    return NotificationConfig(
        targets=tuple(WebhookTarget(name, url="https://receiver.example.com") for name in names),
        subscriptions=tuple(
            Subscription(target=name, on=frozenset(Trigger), **subscription)  # type: ignore[arg-type]
            for name in names
        ),
        delivery=policy or DeliveryPolicy(),
    )


RETRY = DeliveryError("HTTP 503", retryable=True)


async def test_each_target_gets_every_transition_in_order_and_the_engine_hears_of_each() -> None:
    clock, recorder, delivered = Clock(), Recorder(), []
    a = ScriptedChannel("a", [RETRY, RETRY])  # the first message needs three attempts: the others wait behind it
    b = ScriptedChannel("b")
    notifier = Notifier(
        config=config("a", "b"),
        channels=[a, b],
        observer=recorder,
        on_delivered=lambda id, target: delivered.append((id, target)),
        clock=clock,
        sleep=clock.sleep,
        rand=lambda: 1.0,
    )
    assert recorder.targets == ["a", "b"]  # series start at 0
    transitions = [transition(n) for n in range(3)]
    for t in transitions:
        assert notifier.offer(t) == ("a", "b")
    assert [(p.target, p.transition_id) for p in notifier.pending()] == [
        *(("a", t.id) for t in transitions),
        *(("b", t.id) for t in transitions),
    ]
    async with notifier:
        await asyncio.wait_for(notifier.idle(), 5)
    ids = [t.id for t in transitions]
    assert a.delivered == ids and b.delivered == ids
    assert [attempt for attempt, _ in a.attempts] == [ids[0], ids[0], *ids]
    assert sorted(delivered) == sorted((id, target) for id in ids for target in ("a", "b"))
    assert recorder.outcomes.count(("a", "sent")) == 3 and recorder.outcomes.count(("b", "sent")) == 3
    assert notifier.pending() == ()


async def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    assert [full_jitter(n, base=1.0, cap=10.0, rand=lambda: 1.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert full_jitter(3, base=1.0, cap=10.0, rand=lambda: 0.25) == 1.0
    assert full_jitter(3, base=1.0, cap=10.0, rand=lambda: 0.0) == 0.0

    clock, recorder = Clock(), Recorder()
    channel = ScriptedChannel("a", [RETRY] * 4, clock=clock)
    policy = DeliveryPolicy(max_attempts=6, max_delay=5.0, max_age=3600)
    async with Notifier(
        config=config("a", policy=policy),
        channels=[channel],
        observer=recorder,
        clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
    ) as notifier:
        notifier.offer(transition())
        await asyncio.wait_for(notifier.idle(), 5)
    assert clock.sleeps == [0.5, 1.0, 2.0, 2.5]
    assert [at - T0 for _, at in channel.attempts] == [0.0, 0.5, 1.5, 3.5, 6.0]
    assert recorder.outcomes == [("a", "sent")]


async def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    clock = Clock()
    channel = ScriptedChannel(
        "a",
        [
            DeliveryError("HTTP 429", retryable=True, retry_after=30.0),
            DeliveryError("HTTP 503", retryable=True, retry_after=0.0),
        ],
    )
    async with Notifier(
        config=config("a"), channels=[channel], clock=clock, sleep=clock.sleep, rand=lambda: 1.0
    ) as notifier:
        notifier.offer(transition())
        await asyncio.wait_for(notifier.idle(), 5)
    assert clock.sleeps == [30.0, 2.0]  # Retry-After 30 beats a 1 s backoff; 0 does not shorten the 2 s one
    assert len(channel.delivered) == 1


@pytest.mark.parametrize(
    ("script", "policy", "attempts"),
    [
        ([DeliveryError("HTTP 404", retryable=False)], DeliveryPolicy(), 1),  # retrying cannot help
        ([RETRY] * 10, DeliveryPolicy(max_attempts=3), 3),  # attempts used up
        # The next attempt would start later than maxAge after queuing: 1 + 2 + 4 > 5.
        ([RETRY] * 10, DeliveryPolicy(max_attempts=10, max_age=5.0), 3),
        ([DeliveryError("HTTP 429", retryable=True, retry_after=7200.0)], DeliveryPolicy(max_age=600.0), 1),
        ([ValueError("https://secret.example.com/x")], DeliveryPolicy(), 1),  # an unexpected error: not retried
    ],
)
async def test_a_message_that_cannot_be_delivered_is_failed_and_counted(
    script: list[BaseException], policy: DeliveryPolicy, attempts: int
) -> None:
    clock, recorder, delivered = Clock(), Recorder(), []
    channel = ScriptedChannel("a", script)
    async with Notifier(
        config=config("a", policy=policy),
        channels=[channel],
        observer=recorder,
        on_delivered=lambda *args: delivered.append(args),
        clock=clock,
        sleep=clock.sleep,
        rand=lambda: 1.0,
    ) as notifier:
        notifier.offer(transition())
        await asyncio.wait_for(notifier.idle(), 5)
    assert len(channel.attempts) == attempts
    assert recorder.outcomes == [("a", "failed")]
    assert delivered == []


async def test_each_attempt_is_bounded_by_the_attempt_timeout() -> None:
    clock, recorder = Clock(), Recorder()
    channel = ScriptedChannel("a")
    channel.gate.clear()  # a receiver that never answers
    policy = DeliveryPolicy(max_attempts=2, attempt_timeout=0.05)
    async with Notifier(
        config=config("a", policy=policy), channels=[channel], observer=recorder, clock=clock, sleep=clock.sleep
    ) as notifier:
        notifier.offer(transition())
        await asyncio.wait_for(notifier.idle(), 5)
    assert len(channel.attempts) == 2
    assert recorder.outcomes == [("a", "failed")]


async def test_a_full_queue_drops_and_counts_and_other_targets_go_on() -> None:
    recorder = Recorder()
    stuck = ScriptedChannel("stuck")
    stuck.gate.clear()  # a receiver that never answers
    fine = ScriptedChannel("fine")
    policy = DeliveryPolicy(queue_size=2, attempt_timeout=3600)
    notifier = Notifier(config=config("stuck", "fine", policy=policy), channels=[stuck, fine], observer=recorder)
    async with notifier:
        # Offers are synchronous: no worker runs between them, so both queues fill after two.
        assert [notifier.offer(transition(n)) for n in range(4)] == [("stuck", "fine")] * 2 + [()] * 2
        assert recorder.dropped == ["stuck", "fine", "stuck", "fine"]
        await asyncio.wait_for(_until(lambda: len(fine.delivered) == 2), 5)
        # The stuck target holds its two (one being sent); the other target has room again.
        assert notifier.offer(transition(9)) == ("fine",)
        assert recorder.dropped.count("stuck") == 3
        assert [p.target for p in notifier.pending()] == ["stuck", "stuck", "fine"]


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.001)


async def test_the_same_transition_is_queued_once_and_announced_targets_are_skipped() -> None:
    delivered: list[tuple[str, str]] = []
    a, b = ScriptedChannel("a"), ScriptedChannel("b")
    notifier = Notifier(config=config("a", "b"), channels=[a, b], on_delivered=lambda *args: delivered.append(args))
    t = transition()
    assert notifier.offer(t) == ("a", "b")
    assert notifier.offer(dataclasses.replace(t, message="said again")) == ()  # same id, already queued
    async with notifier:
        await asyncio.wait_for(notifier.idle(), 5)
        assert notifier.offer(t) == ()  # already delivered in this process
        # After a restart the engine knows from the durable record that "a" already had it.
        restarted = Notifier(config=config("a", "b"), channels=[a, b])
        assert restarted.offer(t, announced={"a"}) == ("b",)
    assert sorted(delivered) == [(t.id, "a"), (t.id, "b")]
    assert a.delivered == [t.id] and b.delivered == [t.id]


async def test_opt_in_subscriptions_need_the_rollouts_opt_in() -> None:
    notifier = Notifier(config=config("a", opt_in=True), channels=[ScriptedChannel("a")])
    assert notifier.offer(transition(1)) == ()
    assert notifier.offer(transition(2), opt_in=("a",)) == ("a",)


async def test_pending_shows_what_is_being_sent_and_how_often_it_was_tried() -> None:
    clock = Clock()
    channel = ScriptedChannel("a", [RETRY])
    notifier = Notifier(config=config("a"), channels=[channel], clock=clock, sleep=clock.sleep, rand=lambda: 1.0)
    first, second = transition(1), transition(2)
    notifier.offer(first)
    notifier.offer(second)
    channel.gate.clear()
    async with notifier:
        await asyncio.sleep(0.01)
        head, queued = notifier.pending()
        assert (head.transition_id, head.sending, head.attempts, head.rollout_key) == (
            first.id,
            True,
            1,
            "payments/api-1",
        )
        assert (queued.transition_id, queued.sending, queued.attempts, queued.queued_at) == (second.id, False, 0, T0)
        channel.gate.set()
        await asyncio.wait_for(notifier.idle(), 5)
    assert notifier.pending() == ()


async def test_links_are_issued_to_each_target_for_a_rollout_waiting_for_promotion() -> None:
    clock = Clock()
    a, b = ScriptedChannel("a"), ScriptedChannel("b")
    signer = GateSigner(key=b"k" * 32, base_url="https://r.example.com", ttl=60)
    async with Notifier(config=config("a", "b"), channels=[a, b], signer=signer, clock=clock) as notifier:
        notifier.offer(transition(1, Trigger.WAITING_FOR_PROMOTION))
        notifier.offer(transition(2, Trigger.PROMOTED))
        await asyncio.wait_for(notifier.idle(), 5)
    (links, none), (other, _) = a.links, b.links
    assert none is None and links is not None and other is not None
    assert signer.request_from(links.promote.rsplit("/", 1)[1], now=T0).by == "link:a"
    assert signer.request_from(other.abort.rsplit("/", 1)[1], now=T0).by == "link:b"
    assert links.expires_at == T0 + 60


class Exploding:
    def notification_target(self, *, target: str) -> None:
        raise RuntimeError("observer broken")

    notification = notification_target
    notification_dropped = notification_target


async def test_offer_never_raises_and_broken_hooks_cost_nothing_but_their_own_call() -> None:
    channel = ScriptedChannel("a")

    def broken_hook(id: str, target: str) -> None:
        raise RuntimeError("hook broken")

    notifier = Notifier(config=config("a"), channels=[channel], observer=Exploding(), on_delivered=broken_hook)
    async with notifier:
        for n in range(3):
            assert notifier.offer(transition(n)) == ("a",)
        await asyncio.wait_for(notifier.idle(), 5)
        # Something that is not a transition at all: offer swallows the error instead of raising it.
        assert notifier.offer(object()) == ()  # type: ignore[arg-type]
    assert len(channel.delivered) == 3  # the worker survived every broken hook


def test_offer_cannot_wait_for_anything() -> None:
    # A plain function, not a coroutine: it cannot await a receiver, a lock or a full queue.
    assert not inspect.iscoroutinefunction(Notifier.offer)


async def test_the_prometheus_exporter_counts_sent_failed_and_dropped_by_target() -> None:
    metrics = Metrics()
    ok, broken = ScriptedChannel("ok"), ScriptedChannel("broken", [DeliveryError("HTTP 404", retryable=False)])
    notifier = Notifier(
        config=config("ok", "broken", policy=DeliveryPolicy(queue_size=1)), channels=[ok, broken], observer=metrics
    )
    text = metrics.exposition().decode()
    # Every configured target's series exist at 0 before anything happened.
    assert 'lambda_rollouts_notifications_total{outcome="failed",target="ok"} 0.0' in text
    assert 'lambda_rollouts_notification_queue_dropped_total{target="broken"} 0.0' in text
    async with notifier:
        notifier.offer(transition(1))
        notifier.offer(transition(2))  # both queues hold one: dropped for each target
        await asyncio.wait_for(notifier.idle(), 5)
    text = metrics.exposition().decode()
    assert 'lambda_rollouts_notifications_total{outcome="sent",target="ok"} 1.0' in text
    assert 'lambda_rollouts_notifications_total{outcome="failed",target="broken"} 1.0' in text
    assert 'lambda_rollouts_notification_queue_dropped_total{target="ok"} 1.0' in text
    assert 'lambda_rollouts_notification_queue_dropped_total{target="broken"} 1.0' in text


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = 1767225600.0  # Thu, 01 Jan 2026 00:00:00 GMT
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=now) == 0.0  # in the past: no wait
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("-5", now=now) is None


async def test_a_full_queue_warns_once_when_it_starts_dropping_and_once_when_it_has_room(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="controller.notify")
    channel = ScriptedChannel("a")
    notifier = Notifier(config=config("a", policy=DeliveryPolicy(queue_size=1)), channels=[channel])
    async with notifier:
        for n in range(50):
            notifier.offer(transition(n))
        await asyncio.wait_for(notifier.idle(), 5)
        notifier.offer(transition(99))
        await asyncio.wait_for(notifier.idle(), 5)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].endswith("queue full (1): dropped")
    assert warnings[1].endswith("queue has room again; 49 dropped while full")
    assert len(channel.delivered) == 2


async def test_a_message_interrupted_by_stop_stays_pending_and_is_sent_after_a_restart() -> None:
    channel = ScriptedChannel("a")
    channel.gate.clear()
    notifier = Notifier(config=config("a", policy=DeliveryPolicy(attempt_timeout=3600)), channels=[channel])
    t = transition()
    notifier.offer(t)
    await notifier.start()
    await asyncio.sleep(0.01)
    await notifier.stop()
    (pending,) = notifier.pending()
    assert (pending.transition_id, pending.sending, pending.attempts) == (t.id, False, 1)
    assert notifier.offer(t) == ()  # still queued: not twice
    channel.gate.set()
    async with notifier:
        await asyncio.wait_for(notifier.idle(), 5)
    assert channel.delivered == [t.id] and notifier.pending() == ()


async def test_stop_gives_the_queues_time_to_drain() -> None:
    channel = ScriptedChannel("a")
    notifier = Notifier(config=config("a"), channels=[channel])
    await notifier.start()
    for n in range(5):
        notifier.offer(transition(n))
    await notifier.stop(drain=5.0)
    assert len(channel.delivered) == 5 and notifier.pending() == ()
