"""Alarm state changes pushed by CloudWatch through EventBridge and SQS, for ``--alarm-events auto|QUEUE_URL``.

Polling ``DescribeAlarms`` once per tick bounds the rollback reaction by the interval. CloudWatch
publishes every alarm state change on the default event bus ("CloudWatch Alarm State Change",
delivery guaranteed); one EventBridge rule sends those of the watched alarms to one SQS queue, and
the controller long-polls that queue in its own task. Polling stays as the safety net: an event may
be late, or the queue misconfigured, so the consumer reports its health instead of pretending.

Three parts, each usable on its own:

- ``alarm_pattern`` (pure): the rule's event pattern for a set of alarm names, within EventBridge's
  pattern size limit (2,048 characters by default, adjustable to 4,096: ``pattern_limit``). The
  names themselves while they fit; beyond that, names collapsed into the prefixes they share, the
  longest prefixes first and only as many as needed (so the rule matches as few other alarms as it
  can); and if even one-letter prefixes do not fit, every alarm state change of the account. Prefixes
  rather than "everything" first because every extra match is a message the queue receives and the
  consumer drops. The
  consumer filters by name whatever the pattern, so a wider pattern costs messages, never correctness.
- ``AlarmEventsSetup`` (``auto``): creates, or finds and checks, one queue (4 days' retention, so it
  outlives a controller that is down for a weekend; server-side encryption on) and one rule on the
  default bus with the queue as its target, and a queue policy letting only that rule send
  (``aws:SourceArn``). ``sync`` keeps the rule's pattern in step with the watched alarms and calls AWS
  only when the pattern changes. ``GivenQueue`` (``QUEUE_URL``) only checks the platform team's queue.
- ``AlarmEventConsumer``: long-polls the queue, parses each message, hands each change of a watched
  alarm to a callback at once, and deletes the message only after the callback returned: at-least-once,
  and a restart resumes where the last controller stopped because SQS keeps what nobody deleted.
  Duplicates (EventBridge and SQS both deliver at least once) are dropped per (alarm, transition
  time). Events may arrive out of order: a stale OK is dropped (a newer transition of that alarm was
  delivered), a stale ALARM is still delivered, because an alarm that was in ALARM at any instant while
  a canary had traffic rolls it back.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from controller.aws.errors import AwsError, NotFound, Throttled
from controller.aws.events import EventsAdapter
from controller.aws.sqs import MAX_MESSAGES, MAX_WAIT_SECONDS, Message, SqsAdapter

__all__ = [
    "PATTERN_LIMIT",
    "QUEUE_NAME",
    "RETENTION_SECONDS",
    "RULE_NAME",
    "AlarmChange",
    "AlarmEventConsumer",
    "AlarmEventsSetup",
    "AlarmPattern",
    "ConsumerHealth",
    "EventQueue",
    "GivenQueue",
    "HealthState",
    "Matching",
    "NotAnAlarmChange",
    "QueueSource",
    "alarm_pattern",
    "parse_alarm_change",
    "queue_policy",
]

logger = logging.getLogger("controller.analysis.alarm_events")

T = TypeVar("T")

SOURCE = "aws.cloudwatch"
DETAIL_TYPE = "CloudWatch Alarm State Change"
STATES = frozenset({"OK", "ALARM", "INSUFFICIENT_DATA"})
ALARM = "ALARM"
QUEUE_NAME = "lambda-rollouts-alarm-events"
RULE_NAME = "lambda-rollouts-alarm-events"
TARGET_ID = "lambda-rollouts-alarm-events-queue"
#: Four days: a controller down over a long weekend still finds every change in the queue.
RETENTION_SECONDS = 4 * 24 * 3600
#: EventBridge's default "Event pattern size" quota, in characters (adjustable up to 4,096).
PATTERN_LIMIT = 2048
_POLICY_SID = "LambdaRolloutsAlarmEventsRuleOnly"
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "KMS.AccessDeniedException", "KmsAccessDenied"})


# --- the rule's event pattern ------------------------------------------------------------------------------------


class Matching(StrEnum):
    """How the rule's pattern picks alarms."""

    NAMES = "names"  # exactly the watched alarms
    PREFIXES = "prefixes"  # names too long for the limit: prefixes they share (and names no other shares)
    ALL = "all"  # not even prefixes fit: every alarm state change of the account
    NONE = "none"  # no watched alarm: the rule is disabled


@dataclass(frozen=True)
class AlarmPattern:
    """The rule's pattern as sent (``text``, compact JSON), how it matches, and its names or prefixes."""

    text: str
    matching: Matching
    names: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        """The rule's state: a rule for no alarm is disabled rather than matching everything."""
        return "DISABLED" if self.matching is Matching.NONE else "ENABLED"


def _pattern_text(names: Iterable[str] | None, prefixes: Iterable[str] = ()) -> str:
    pattern: dict[str, Any] = {"source": [SOURCE], "detail-type": [DETAIL_TYPE]}
    if names is not None:
        matchers: list[Any] = [*names, *({"prefix": prefix} for prefix in prefixes)]
        pattern["detail"] = {"alarmName": matchers}
    # Compact and unescaped: the quota counts the characters sent.
    return json.dumps(pattern, separators=(",", ":"), ensure_ascii=False)


def _size(text: str, prefix: bool) -> int:
    """Characters one matcher takes in the pattern: ``"name"`` or ``{"prefix":"name"}``."""
    quoted = len(json.dumps(text, ensure_ascii=False))
    return quoted + len('{"prefix":}') if prefix else quoted


def _collapsed(names: list[str], *, room: int) -> dict[str, bool] | None:
    """Matchers for ``names`` in at most ``room`` characters (commas included): matcher -> is a prefix.

    Names sharing a prefix are collapsed into it, the longest prefixes first (so the rule matches as
    few other alarms as it can), the most characters saved first among prefixes of one length, and
    only until the matchers fit. None when even one-character prefixes do not fit.
    """
    entries = dict.fromkeys(names, False)
    size = sum(_size(name, False) for name in names) + len(names) - 1
    for length in range(max(len(name) for name in names) - 1, 0, -1):
        if size <= room:
            return entries
        groups: dict[str, list[str]] = {}
        for text in entries:
            if len(text) > length:
                groups.setdefault(text[:length], []).append(text)
        candidates: list[tuple[int, str, list[str]]] = []
        for key, members in groups.items():
            covered = [*members, key] if key in entries else members  # a name equal to the prefix is in it
            saving = sum(_size(text, entries[text]) + 1 for text in covered) - (_size(key, True) + 1)
            if len(covered) > 1 and saving > 0:
                candidates.append((-saving, key, covered))
        for negative_saving, key, covered in sorted(candidates):
            for text in covered:
                del entries[text]
            entries[key] = True
            size += negative_saving
            if size <= room:
                return entries
    return entries if size <= room else None


def alarm_pattern(alarm_names: Iterable[str], *, limit: int = PATTERN_LIMIT) -> AlarmPattern:
    """The event pattern matching the state changes of ``alarm_names`` in at most ``limit`` characters.

    See the module docstring for the fallbacks: names, then shared prefixes (``_collapsed``), then
    every alarm state change.
    """
    names = sorted(set(alarm_names))
    if not names:
        return AlarmPattern(text=_pattern_text(None), matching=Matching.NONE)
    text = _pattern_text(names)
    if len(text) <= limit:
        return AlarmPattern(text=text, matching=Matching.NAMES, names=tuple(names))
    entries = _collapsed(names, room=limit - len(_pattern_text([])))
    if entries is None:
        return AlarmPattern(text=_pattern_text(None), matching=Matching.ALL)
    exact = sorted(text for text, prefix in entries.items() if not prefix)
    prefixes = sorted(text for text, prefix in entries.items() if prefix)
    return AlarmPattern(
        text=_pattern_text(exact, prefixes), matching=Matching.PREFIXES, names=tuple(exact), prefixes=tuple(prefixes)
    )


def _same_pattern(sent: str, read: str) -> bool:
    try:
        return bool(json.loads(sent) == json.loads(read))
    except ValueError:
        return False


# --- the queue and the rule ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventQueue:
    """The queue the consumer reads: its URL (what SQS calls take) and ARN."""

    url: str
    arn: str


class QueueSource(Protocol):
    """Where the consumer's queue comes from; asked again after the queue was lost (deleted, denied)."""

    async def ready(self) -> EventQueue:
        """The queue, made ready to read (``auto``: created or repaired); raises ``AwsError``."""


def queue_policy(*, queue_arn: str, rule_arn: str) -> dict[str, Any]:
    """The queue policy of ``auto``: EventBridge may send to the queue, on behalf of that one rule only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": _POLICY_SID,
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }


def _normal(value: Any) -> Any:
    """A policy with one-element lists as scalars, as IAM reads them (AWS may return either form)."""
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items()}
    if isinstance(value, list):
        return _normal(value[0]) if len(value) == 1 else [_normal(item) for item in value]
    return value


def _same_policy(read: str, wanted: dict[str, Any]) -> bool:
    try:
        return bool(_normal(json.loads(read)) == _normal(wanted))
    except ValueError:
        return False


class AlarmEventsSetup:
    """``--alarm-events auto``: one queue, one rule on the default bus, a policy allowing only that rule.

    ``ensure`` creates what is missing and repairs what differs (the rule's pattern and state, the
    queue's retention, encryption and policy, the rule's target), reading first, so that a second
    ``ensure`` over the same alarms is four reads and no write. ``sync`` follows the watched alarms.
    Both share one lock: the consumer's recovery (``ready``) may run beside the wiring's ``sync``.
    """

    def __init__(
        self,
        *,
        events: EventsAdapter,
        sqs: SqsAdapter,
        queue_name: str = QUEUE_NAME,
        rule_name: str = RULE_NAME,
        retention_seconds: int = RETENTION_SECONDS,
        pattern_limit: int = PATTERN_LIMIT,
    ) -> None:
        self._events = events
        self._sqs = sqs
        self._queue_name = queue_name
        self._rule_name = rule_name
        self._retention = retention_seconds
        self._limit = pattern_limit
        self._names: frozenset[str] = frozenset()
        self._applied: AlarmPattern | None = None
        self._lock = asyncio.Lock()

    @property
    def pattern(self) -> AlarmPattern | None:
        """The pattern the rule has, as last read or written (None before the first ``ensure``)."""
        return self._applied

    async def ensure(self, alarm_names: Iterable[str]) -> EventQueue:
        """Make the rule match ``alarm_names`` and the queue ready; returns the queue. Raises ``AwsError``."""
        async with self._lock:
            self._names = frozenset(alarm_names)
            return await self._ensure()

    async def ready(self) -> EventQueue:
        """``ensure`` for the alarms last given (``QueueSource``: re-creates a deleted queue)."""
        async with self._lock:
            return await self._ensure()

    async def sync(self, alarm_names: Iterable[str]) -> bool:
        """Keep the rule's pattern matching ``alarm_names``; True when it wrote the rule (one PutRule).

        Cheap to call on every change of the documents, or every tick: no AWS call unless the pattern
        changes. Before the first ``ensure`` it only remembers the names (``ensure`` applies them).
        """
        async with self._lock:
            self._names = frozenset(alarm_names)
            if self._applied is None:
                return False
            wanted = alarm_pattern(self._names, limit=self._limit)
            if wanted == self._applied:
                return False
            await self._put_rule(wanted)
            return True

    async def _put_rule(self, pattern: AlarmPattern) -> str:
        arn = await self._events.put_rule(
            name=self._rule_name,
            event_pattern=pattern.text,
            state=pattern.state,
            description="CloudWatch alarm state changes of the alarms lambda-rollouts watches (managed by it)",
        )
        self._applied = pattern
        if pattern.matching is Matching.PREFIXES or pattern.matching is Matching.ALL:
            logger.info(
                "alarm-events rule %s matches %s: the alarm names exceed EventBridge's %d-character pattern "
                "limit; state changes of other alarms are dropped by the consumer",
                self._rule_name,
                f"{len(pattern.prefixes)} prefixes and {len(pattern.names)} names"
                if pattern.matching is Matching.PREFIXES
                else "every alarm",
                self._limit,
            )
        return arn

    async def _ensure(self) -> EventQueue:
        wanted = alarm_pattern(self._names, limit=self._limit)
        rule = await self._events.describe_rule(self._rule_name)
        if rule is not None and _same_pattern(wanted.text, rule.event_pattern) and rule.state == wanted.state:
            rule_arn = rule.arn
            self._applied = wanted
        else:
            rule_arn = await self._put_rule(wanted)
        url = await self._sqs.queue_url(self._queue_name)
        if url is None:
            url = await self._sqs.create_queue(
                name=self._queue_name,
                attributes={"MessageRetentionPeriod": str(self._retention), "SqsManagedSseEnabled": "true"},
            )
            logger.info("created the alarm-events queue %s", url)
        attributes = await self._sqs.queue_attributes(
            url, ["QueueArn", "Policy", "MessageRetentionPeriod", "SqsManagedSseEnabled", "KmsMasterKeyId"]
        )
        queue_arn = attributes["QueueArn"]
        policy = queue_policy(queue_arn=queue_arn, rule_arn=rule_arn)
        changes: dict[str, str] = {}
        if int(attributes.get("MessageRetentionPeriod") or 0) < self._retention:
            changes["MessageRetentionPeriod"] = str(self._retention)
        # Either kind of server-side encryption will do: a queue someone moved to a KMS key stays so.
        if attributes.get("SqsManagedSseEnabled") != "true" and not attributes.get("KmsMasterKeyId"):
            changes["SqsManagedSseEnabled"] = "true"
        if not _same_policy(attributes.get("Policy") or "", policy):
            changes["Policy"] = json.dumps(policy, separators=(",", ":"))
        if changes:
            await self._sqs.set_queue_attributes(url, changes)
            logger.info("set %s of the alarm-events queue %s", ", ".join(sorted(changes)), url)
        targets = await self._events.targets(self._rule_name)
        if not any(target.arn == queue_arn and not target.rewritten for target in targets):
            await self._events.put_target(rule=self._rule_name, target_id=TARGET_ID, arn=queue_arn)
            logger.info("alarm-events rule %s now sends to %s", self._rule_name, queue_arn)
        return EventQueue(url=url, arn=queue_arn)


class GivenQueue:
    """``--alarm-events QUEUE_URL``: the platform team's queue and rule, checked and never changed."""

    def __init__(self, *, sqs: SqsAdapter, url: str) -> None:
        self._sqs = sqs
        self._url = url

    async def ready(self) -> EventQueue:
        """The queue if it exists and we may read its attributes (``NotFound`` / ``AwsError`` otherwise)."""
        attributes = await self._sqs.queue_attributes(self._url, ["QueueArn"])
        return EventQueue(url=self._url, arn=attributes["QueueArn"])


# --- messages -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmChange:
    """One alarm state change as CloudWatch published it.

    ``at`` is when the alarm changed state (epoch seconds, CloudWatch's clock); ``received_at`` is
    when the controller received it (the consumer's clock). ``previous`` is the state it left: an OK
    whose ``previous`` is ALARM says the alarm was in ALARM until ``at``.
    """

    name: str
    state: str
    previous: str
    at: float
    reason: str
    received_at: float


class NotAnAlarmChange(ValueError):
    """A queue message that is not a CloudWatch alarm state change (it is dropped, with a warning)."""


def _epoch(text: Any) -> float:
    # CloudWatch writes "2019-10-02T17:04:40.985+0000"; the envelope's time is "2019-10-02T17:04:40Z".
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError as exc:
        raise NotAnAlarmChange(f"unreadable timestamp {text!r}") from exc


def parse_alarm_change(body: str, *, received_at: float) -> AlarmChange:
    """The change an SQS message body carries: the EventBridge envelope with CloudWatch's detail.

    A body that is an SNS notification (a platform team fanning the events out through a topic) is
    unwrapped first. Raises ``NotAnAlarmChange`` for anything else.
    """
    try:
        event = json.loads(body)
        if isinstance(event, dict) and event.get("Type") == "Notification" and isinstance(event.get("Message"), str):
            event = json.loads(event["Message"])
    except ValueError as exc:
        raise NotAnAlarmChange("not JSON") from exc
    if not isinstance(event, dict):
        raise NotAnAlarmChange("not a JSON object")
    if event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
        raise NotAnAlarmChange(f"not a {DETAIL_TYPE!r} event: {event.get('source')!r} / {event.get('detail-type')!r}")
    detail = event.get("detail")
    state = detail.get("state") if isinstance(detail, dict) else None
    if not isinstance(detail, dict) or not isinstance(state, dict):
        raise NotAnAlarmChange("no detail.state")
    name, value = detail.get("alarmName"), state.get("value")
    if not isinstance(name, str) or not name:
        raise NotAnAlarmChange("no detail.alarmName")
    if value not in STATES:
        raise NotAnAlarmChange(f"unknown alarm state {value!r}")
    previous = detail.get("previousState")
    stamp = state.get("timestamp") or event.get("time")
    if not stamp:
        raise NotAnAlarmChange("no detail.state.timestamp")
    return AlarmChange(
        name=name,
        state=str(value),
        previous=str(previous.get("value") or "") if isinstance(previous, dict) else "",
        at=_epoch(stamp),
        reason=str(state.get("reason") or ""),
        received_at=received_at,
    )


# --- the consumer -------------------------------------------------------------------------------------------------


class HealthState(StrEnum):
    STARTING = "starting"  # not consuming yet: the queue is being set up or checked
    HEALTHY = "healthy"  # consuming: changes arrive within a round trip of their delivery
    DEGRADED = "degraded"  # not consuming (see the reason): only polling sees alarms; retrying


@dataclass(frozen=True)
class ConsumerHealth:
    """The consumer's health, why, and since when (the consumer's clock)."""

    state: HealthState
    reason: str
    since: float


ChangeCallback = Callable[[AlarmChange], Awaitable[None] | None]


def _reason(error: AwsError, *, url: str, setting_up: bool) -> str:
    """Why the consumer is degraded, for a person; the same words for the same fault, so a fault that
    lasts is logged once however often it is retried (a queue deleted under a poll and still missing
    when it is checked again)."""
    queue = f"the alarm-events queue {url}" if url else "the alarm-events queue"
    if isinstance(error, NotFound):
        return f"{queue} does not exist (deleted?)"
    if error.code in _DENIED:
        return f"access to {queue} is denied ({error.operation}): {error.message}"
    if isinstance(error, Throttled):
        return f"SQS is throttling {error.operation} on {queue}"
    return f"{'setting up' if setting_up else 'reading'} {queue} failed: {error}"


class AlarmEventConsumer:
    """Long-polls the alarm-events queue in its own task (``run``) and hands each change to ``on_change``.

    ``on_change`` may be a plain function or a coroutine function; a message is deleted only after it
    returned, so an exception (logged) leaves the message to SQS, which delivers it again after the
    queue's visibility timeout. Only changes of the ``watched`` alarms (``watch`` replaces them) reach
    it; the others are deleted unseen. ``clock`` (epoch seconds) stamps ``received_at`` and the health;
    ``sleep`` waits between retries, ``backoff_initial`` doubling up to ``backoff_max`` while failing.
    ``on_health`` is told each change of health (quick, never raising: the daemon's gauge and /readyz).
    """

    def __init__(
        self,
        *,
        sqs: SqsAdapter,
        queue: QueueSource,
        on_change: ChangeCallback,
        watched: Iterable[str],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wait_seconds: int = MAX_WAIT_SECONDS,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        remember: int = 10_000,
        on_health: Callable[[ConsumerHealth], None] | None = None,
    ) -> None:
        if not 1 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait_seconds must be 1-{MAX_WAIT_SECONDS}, got {wait_seconds}")
        self._sqs = sqs
        self._queue = queue
        self._on_change = on_change
        self._watched = frozenset(watched)
        self._clock = clock
        self._sleep = sleep
        self._wait = wait_seconds
        self._backoff = (backoff_initial, backoff_max)
        self._remember = remember
        # (alarm, transition time) of every change delivered lately, oldest first: drops duplicates.
        self._delivered: collections.OrderedDict[tuple[str, float], None] = collections.OrderedDict()
        # Per alarm, the newest transition time delivered: an older OK is stale.
        self._newest: dict[str, float] = {}
        self._health = ConsumerHealth(HealthState.STARTING, "not started", clock())
        self._on_health = on_health

    @property
    def health(self) -> ConsumerHealth:
        return self._health

    def watch(self, alarm_names: Iterable[str]) -> None:
        """Deliver changes of these alarms from now on (the set the rollouts watch)."""
        self._watched = frozenset(alarm_names)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (a long poll under way is abandoned: its messages come back)."""
        queue: EventQueue | None = None
        url = ""  # the queue last read, for the reasons given while it is set up again
        failures = 0
        while not stop.is_set():
            try:
                if queue is None:
                    queue = await self._unless_stopped(stop, self._queue.ready())
                    if queue is None:
                        return
                    url = queue.url
                    # A short poll first: it proves the queue readable at once, not after a long poll.
                    messages = await self._unless_stopped(stop, self._sqs.receive(queue.url, wait_seconds=0))
                else:
                    messages = await self._unless_stopped(
                        stop, self._sqs.receive(queue.url, max_messages=MAX_MESSAGES, wait_seconds=self._wait)
                    )
                if messages is None:
                    return
                self._set_health(HealthState.HEALTHY, f"consuming {queue.url}")
                failures = 0
                await self._handle(queue, messages)
            except Exception as error:  # a fault, or a bug, degrades push mode visibly; it never ends it
                failures += 1
                if isinstance(error, AwsError):
                    reason = _reason(error, url=url, setting_up=queue is None)
                    lost = queue is None or isinstance(error, NotFound) or error.code in _DENIED
                else:
                    logger.exception("alarm events: unexpected error")
                    reason, lost = f"unexpected {type(error).__name__}: {error}", True
                self._set_health(HealthState.DEGRADED, reason)
                if lost:
                    queue = None  # set up (auto) or checked (given URL) again before the next poll
                delay = min(self._backoff[1], self._backoff[0] * 2 ** (failures - 1))
                logger.debug("alarm events: retrying in %.1f s after %s", delay, error)
                await self._unless_stopped(stop, self._sleep(delay))

    async def _unless_stopped(self, stop: asyncio.Event, work: Awaitable[T]) -> T | None:
        """``work``'s result, or None as soon as ``stop`` is set (``work`` is then cancelled)."""
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            finished = task.done()
            if not finished:  # stopped, or this task itself cancelled
                task.cancel()
        return task.result() if finished else None

    def _set_health(self, state: HealthState, reason: str) -> None:
        if (state, reason) == (self._health.state, self._health.reason):
            return
        self._health = ConsumerHealth(state, reason, self._clock())
        if self._on_health is not None:
            self._on_health(self._health)
        if state is HealthState.HEALTHY:
            logger.info("alarm events healthy: %s", reason)
        else:
            logger.warning("alarm events %s: %s; polling alone sees alarms until it recovers", state.value, reason)

    def _wanted(self, change: AlarmChange) -> bool:
        if change.name not in self._watched or (change.name, change.at) in self._delivered:
            return False
        # An older OK would undo what a newer change said; an older ALARM still happened.
        return change.state == ALARM or change.at >= self._newest.get(change.name, change.at)

    def _delivered_now(self, change: AlarmChange) -> None:
        self._delivered[(change.name, change.at)] = None
        while len(self._delivered) > self._remember:
            self._delivered.popitem(last=False)
        self._newest[change.name] = max(change.at, self._newest.get(change.name, change.at))

    async def _handle(self, queue: EventQueue, messages: list[Message]) -> None:
        received_at = self._clock()
        handled: list[str] = []
        for message in messages:
            try:
                change = parse_alarm_change(message.body, received_at=received_at)
            except NotAnAlarmChange as exc:
                logger.warning("dropping message %s of the alarm-events queue: %s", message.message_id, exc)
                handled.append(message.receipt_handle)
                continue
            if self._wanted(change):
                try:
                    result = self._on_change(change)
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # the callback's bug must not stop the consumer; SQS keeps the message
                    logger.exception("alarm change of %s not handled; it will be delivered again", change.name)
                    continue
                self._delivered_now(change)
            handled.append(message.receipt_handle)
        if handled:
            for failure in await self._sqs.delete_messages(queue.url, handled):
                logger.warning(
                    "alarm-events message not deleted (%s: %s); it will be received again and dropped as a duplicate",
                    failure.code,
                    failure.message,
                )
