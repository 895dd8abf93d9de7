"""Composite alarms and a DescribeAlarms that filters and pages like CloudWatch.

moto 5.2 has no ``PutCompositeAlarm`` (HTTP 500), stores a composite alarm (if one reaches it)
as a metric alarm with a ``rule``, never evaluates it, and its ``DescribeAlarms`` ignores
``MaxRecords``/``NextToken``/``AlarmTypes`` and returns composite alarms even when only metric
alarms were asked for (CloudWatch's default). A controller that gates a rollout on a composite
alarm, or pages through many alarms with botocore's paginator, would see something AWS never
returns. This module:

* serves ``PutCompositeAlarm`` with AWS's ``AlarmRule`` grammar (``ALARM(name)``, ``OK(...)``,
  ``INSUFFICIENT_DATA(...)``, ``AND``/``OR``/``NOT``, parentheses, ``TRUE``/``FALSE``) and its
  validation errors (``ValidationError`` for a malformed rule or a rule naming missing alarms);
* evaluates composite alarms over their children's states (:func:`evaluate_composites`: when one
  is created, and whenever a child changes state), with AWS's ``StateReason``/``StateReasonData``
  shape, so state changes emit the same EventBridge event and history item as metric alarms;
* replaces ``DescribeAlarms``: every filter combined, ``AlarmTypes`` (default ``MetricAlarm``),
  ``ChildrenOfAlarmName``/``ParentsOfAlarmName``, ``MaxRecords`` 1-100 (default 50) and an
  opaque ``NextToken``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.exceptions import CloudWatchException, InvalidParameterCombination, ValidationError
from moto.cloudwatch.models import Alarm, CloudWatchBackend
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult, EmptyResult

#: DescribeAlarms page size when MaxRecords is not given, and its modelled range.
DEFAULT_MAX_RECORDS = 50
MAX_RECORDS_RANGE = (1, 100)
#: AlarmRule is limited to 10240 characters in the API model.
MAX_RULE_LENGTH = 10240
#: Composite alarms may reference composite alarms; stop re-evaluating after this many rounds.
MAX_COMPOSITE_ROUNDS = 10
_STATES = ("ALARM", "OK", "INSUFFICIENT_DATA")
_ALARM_TYPES = ("CompositeAlarm", "MetricAlarm")
#: Serialises composite evaluation between the timer thread and request threads (SetAlarmState).
_COMPOSITE_LOCK = threading.RLock()


class InvalidNextToken(CloudWatchException):
    """CloudWatch's error for a NextToken it did not issue (HTTP 400)."""

    code = "InvalidNextToken"


# --- the AlarmRule language -----------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<paren>[()])|(?P<quoted>\"[^\"]*\"|'[^']*')|(?P<word>[^\s()\"']+))")


@dataclass(frozen=True)
class Node:
    """One node of a parsed rule: ``const``, ``state`` (state, alarm), ``not``, ``and``, ``or``."""

    kind: str
    value: bool = False
    state: str = ""
    alarm: str = ""
    children: tuple[Node, ...] = ()


def _rule_error(detail: str) -> ValidationError:
    return ValidationError(f"Error in AlarmRule [{detail}]")


def _tokenize(rule: str) -> list[tuple[str, str, int]]:
    """(kind, text, 1-based position) for every token; anything unrecognised is refused."""
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(rule):
        if rule[pos:].strip() == "":
            break
        match = _TOKEN.match(rule, pos)
        if match is None or match.end() == pos:
            raise _rule_error(f"Unsupported token '{rule[pos]}' at char {pos + 1}")
        kind = match.lastgroup or ""
        text = match.group(kind)
        tokens.append((kind, text, match.start(kind) + 1))
        pos = match.end()
    return tokens


def parse_rule(rule: str) -> Node:
    """Parse an AlarmRule; precedence NOT > AND > OR, as in CloudWatch. Raises ``ValidationError``."""
    if not rule or not rule.strip():
        raise ValidationError("AlarmRule must not be empty")
    if len(rule) > MAX_RULE_LENGTH:
        raise ValidationError(
            f"1 validation error detected: Value at 'alarmRule' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_RULE_LENGTH}"
        )
    tokens = _tokenize(rule)
    index = 0

    def peek() -> tuple[str, str, int] | None:
        return tokens[index] if index < len(tokens) else None

    def take(expected: str | None = None) -> tuple[str, str, int]:
        nonlocal index
        token = peek()
        if token is None:
            raise _rule_error("Unexpected end of rule")
        if expected is not None and token[1] != expected:
            raise _rule_error(f"Unsupported token '{token[1]}' at char {token[2]}")
        index += 1
        return token

    def expr() -> Node:
        node = term()
        while (token := peek()) is not None and token[1] == "OR" and token[0] == "word":
            take()
            node = Node("or", children=(node, term()))
        return node

    def term() -> Node:
        node = unary()
        while (token := peek()) is not None and token[1] == "AND" and token[0] == "word":
            take()
            node = Node("and", children=(node, unary()))
        return node

    def unary() -> Node:
        kind, text, position = take()
        if kind == "quoted":  # a quoted word is an alarm name, only valid inside STATE(...)
            raise _rule_error(f"Unsupported token '{text}' at char {position}")
        if text == "NOT":
            return Node("not", children=(unary(),))
        if text == "(":
            inner = expr()
            take(")")
            return inner
        if text in ("TRUE", "FALSE"):
            return Node("const", value=text == "TRUE")
        if text in _STATES:
            take("(")
            name_kind, name, name_position = take()
            if name_kind == "quoted":
                name = name[1:-1]
            elif name_kind != "word":
                raise _rule_error(f"Unsupported token '{name}' at char {name_position}")
            take(")")
            return Node("state", state=text, alarm=name)
        raise _rule_error(f"Unsupported token '{text}' at char {position}")

    tree = expr()
    leftover = peek()
    if leftover is not None:
        raise _rule_error(f"Unsupported token '{leftover[1]}' at char {leftover[2]}")
    return tree


def referenced(node: Node) -> list[Node]:
    """Every ``STATE(alarm)`` term of a rule, in order."""
    if node.kind == "state":
        return [node]
    return [term for child in node.children for term in referenced(child)]


def alarm_name(reference: str) -> str:
    """A rule names an alarm by name or by ARN (``arn:aws:cloudwatch:region:account:alarm:name``)."""
    parts = reference.split(":", 6)
    if len(parts) == 7 and parts[0] == "arn" and parts[5] == "alarm":
        return parts[6]
    return reference


def evaluate_rule(node: Node, states: dict[str, str]) -> bool:
    """Truth of a rule given child states; a child that no longer exists matches no state."""
    if node.kind == "const":
        return node.value
    if node.kind == "state":
        return states.get(alarm_name(node.alarm)) == node.state
    if node.kind == "not":
        return not evaluate_rule(node.children[0], states)
    if node.kind == "and":
        return all(evaluate_rule(child, states) for child in node.children)
    return any(evaluate_rule(child, states) for child in node.children)


# --- composite evaluation -------------------------------------------------------------------


def _iso(ts: datetime) -> str:
    aware = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _spoken(ts: datetime) -> str:
    """CloudWatch's wording of a time in composite reasons: ``Friday 28 November, 2026 22:34:56 UTC``."""
    aware = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return aware.strftime("%A %d %B, %Y %H:%M:%S UTC")


def transitioned(alarm: Alarm) -> datetime:
    """When the alarm's state value last changed (set on every alarm by ``cloudwatch_ext``)."""
    found: datetime = getattr(alarm, "state_transitioned_timestamp", alarm.state_updated_timestamp)
    return found


def composite_outcome(backend: CloudWatchBackend, alarm: Alarm) -> tuple[str, str, str] | None:
    """(state, reason, reason data) a composite alarm should have now, or ``None`` to leave it.

    CloudWatch evaluates a composite alarm when one of its children changes state, not on a
    timer, so a ``SetAlarmState`` on the composite holds until a child moves; the children's
    states seen last time are kept on the alarm to tell.
    """
    tree = parse_rule(alarm.rule or "")
    terms = referenced(tree)
    names = sorted({alarm_name(term.alarm) for term in terms})
    children = {name: backend.alarms.get(name) for name in names}
    inputs = tuple((name, child.state_value if child else None) for name, child in children.items())
    if getattr(alarm, "_lr_inputs", None) == inputs:
        return None
    alarm._lr_inputs = inputs  # type: ignore[attr-defined]
    states = {name: child.state_value for name, child in children.items() if child is not None}
    state = "ALARM" if evaluate_rule(tree, states) else "OK"
    # The triggering children: those whose state makes their own term of the rule true.
    triggering = [
        child
        for term in terms
        if (child := children.get(alarm_name(term.alarm))) is not None and child.state_value == term.state
    ]
    unique = list({child.name: child for child in triggering}.values())
    if not unique:
        unique = [child for child in children.values() if child is not None]
    reason_data = {
        "triggeringAlarms": [
            {
                "arn": child.alarm_arn,
                "state": {"value": child.state_value, "timestamp": _iso(transitioned(child))},
            }
            for child in unique
        ]
    }
    if unique:
        latest = max(unique, key=lambda child: _iso(transitioned(child)))
        reason = f"{latest.alarm_arn} transitioned to {latest.state_value} at {_spoken(transitioned(latest))}"
    else:
        reason = f"Alarm rule evaluated to {'TRUE' if state == 'ALARM' else 'FALSE'}"
    return state, reason, json.dumps(reason_data)


def on_state_change(alarm: Alarm) -> None:
    """Re-evaluate the composites of ``alarm``'s account and region after it changed state.

    CloudWatch reacts to the child's transition itself: a child that goes to ALARM and back
    before the next timer pass must still have moved its parents.
    """
    _, _, _, region, account = alarm.alarm_arn.split(":")[:5]
    from moto.cloudwatch.models import cloudwatch_backends

    evaluate_composites(cloudwatch_backends[account][region])


def evaluate_composites(backend: CloudWatchBackend) -> None:
    """Bring every composite alarm of one backend up to date with its children.

    Composites can reference composites, so repeat until nothing changes (bounded, in case a
    rule graph has a cycle AWS would have refused at creation). Re-entrant: a composite's own
    state change calls back in here through :func:`on_state_change`.
    """
    with _COMPOSITE_LOCK:
        _evaluate_composites(backend)


def _evaluate_composites(backend: CloudWatchBackend) -> None:
    for _ in range(MAX_COMPOSITE_ROUNDS):
        changed = False
        for alarm in list(backend.alarms.values()):
            if not alarm.rule:
                continue
            outcome = composite_outcome(backend, alarm)
            if outcome is None:
                continue
            state, reason, data = outcome
            if state != alarm.state_value:
                alarm.update_state(reason, data, state)
                changed = True
        if not changed:
            return


# --- API handlers (installed on moto's CloudWatchResponse) -----------------------------------


def put_composite_alarm(self: CloudWatchResponse) -> ActionResult:
    """PutCompositeAlarm: validate the rule like CloudWatch, then store it as moto stores alarms."""
    name = self._get_param("AlarmName")
    rule = self._get_param("AlarmRule") or ""
    tree = parse_rule(rule)
    backend = self.cloudwatch_backend
    missing = sorted({alarm_name(term.alarm) for term in referenced(tree)} - set(backend.alarms) - {name})
    if missing:
        raise ValidationError(
            f"Could not save the composite alarm as alarms [{', '.join(missing)}] in the alarm rule do not exist"
        )
    if name in {alarm_name(term.alarm) for term in referenced(tree)}:
        raise ValidationError("Composite alarm cannot reference itself in its alarm rule")
    existing = backend.alarms.get(name)
    if existing is not None and not existing.rule:
        raise InvalidParameterCombination(f"An alarm named {name} already exists as a metric alarm")
    # moto keeps composite alarms as Alarm objects with a ``rule`` and no metric fields.
    fields: dict[str, Any] = {
        "name": name,
        "namespace": None,
        "metric_name": None,
        "comparison_operator": None,
        "evaluation_periods": None,
        "period": None,
        "threshold": None,
        "statistic": None,
        "description": self._get_param("AlarmDescription"),
        "dimensions": [],
        "alarm_actions": self._get_param("AlarmActions", []),
        "ok_actions": self._get_param("OKActions", []),
        "insufficient_data_actions": self._get_param("InsufficientDataActions", []),
        "actions_enabled": self._get_bool_param("ActionsEnabled"),
        "rule": rule,
        "tags": self._get_param("Tags", []),
    }
    alarm = backend.put_metric_alarm(**fields)
    # The response serializer looks for ``alarm_rule`` (the model's AlarmRule) first.
    alarm.alarm_rule = rule  # type: ignore[attr-defined]
    # CloudWatch evaluates a new composite at once over its children's current states.
    evaluate_composites(backend)
    return EmptyResult()


def _encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return str(json.loads(base64.urlsafe_b64decode(token.encode()))["after"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidNextToken("The service returned an invalid NextToken") from exc


def _max_records(raw: Any) -> int:
    if raw is None:
        return DEFAULT_MAX_RECORDS
    value = int(raw)
    low, high = MAX_RECORDS_RANGE
    if value < low:
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at 'maxRecords' failed to satisfy constraint: "
            f"Member must have value greater than or equal to {low}"
        )
    if value > high:
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at 'maxRecords' failed to satisfy constraint: "
            f"Member must have value less than or equal to {high}"
        )
    return value


def describe_alarms(self: CloudWatchResponse) -> ActionResult:
    """DescribeAlarms with every filter, AlarmTypes and MaxRecords/NextToken paging.

    Alarms come back in name order (as CloudWatch lists them) and a page is cut from the
    filtered list; the token names the last alarm returned, so alarms created or deleted
    between two pages neither repeat nor shift the rest.
    """
    backend = self.cloudwatch_backend
    names = self._get_param("AlarmNames", []) or []
    prefix = self._get_param("AlarmNamePrefix")
    action_prefix = self._get_param("ActionPrefix")
    state_value = self._get_param("StateValue")
    types = self._get_param("AlarmTypes", []) or ["MetricAlarm"]
    children_of = self._get_param("ChildrenOfAlarmName")
    parents_of = self._get_param("ParentsOfAlarmName")
    limit = _max_records(self._get_param("MaxRecords"))
    token = self._get_param("NextToken")
    if names and prefix:
        raise InvalidParameterCombination("AlarmNamePrefix and AlarmNames cannot be specified together")
    if (children_of or parents_of) and (names or prefix or action_prefix or state_value):
        raise InvalidParameterCombination(
            "ChildrenOfAlarmName and ParentsOfAlarmName cannot be combined with other filters"
        )
    for alarm_type in types:
        if alarm_type not in _ALARM_TYPES:
            raise ValidationError(
                f"1 validation error detected: Value '[{alarm_type}]' at 'alarmTypes' failed to satisfy "
                "constraint: Member must satisfy constraint: [Member must satisfy enum value set: "
                "[CompositeAlarm, MetricAlarm]]"
            )
    if state_value and state_value not in _STATES:
        raise ValidationError(
            f"1 validation error detected: Value '{state_value}' at 'stateValue' failed to satisfy constraint: "
            "Member must satisfy enum value set: [INSUFFICIENT_DATA, ALARM, OK]"
        )

    alarms = sorted(backend.alarms.values(), key=lambda alarm: alarm.name)
    if children_of:
        # The children of a composite (of any type) and the parents of an alarm (composites only).
        parent = backend.alarms.get(children_of)
        wanted = {alarm_name(t.alarm) for t in referenced(parse_rule(parent.rule))} if parent and parent.rule else set()
        alarms = [a for a in alarms if a.name in wanted]
    elif parents_of:
        alarms = [
            a for a in alarms if a.rule and parents_of in {alarm_name(t.alarm) for t in referenced(parse_rule(a.rule))}
        ]
    else:
        alarms = [a for a in alarms if ("CompositeAlarm" if a.rule else "MetricAlarm") in types]
    if names:
        alarms = [a for a in alarms if a.name in names]
    if prefix:
        alarms = [a for a in alarms if a.name.startswith(prefix)]
    if action_prefix:
        alarms = [a for a in alarms if any(action.startswith(action_prefix) for action in a.alarm_actions)]
    if state_value:
        alarms = [a for a in alarms if a.state_value == state_value]
    if token:
        after = _decode_token(token)
        alarms = [a for a in alarms if a.name > after]
    page = alarms[:limit]
    result: dict[str, Any] = {
        "MetricAlarms": [a for a in page if not a.rule],
        "CompositeAlarms": [a for a in page if a.rule],
    }
    if len(alarms) > limit:
        result["NextToken"] = _encode_token(page[-1].name)
    return ActionResult(result)


def install() -> None:
    """Install the handlers on moto's CloudWatch responses (called by ``cloudwatch_ext.install``)."""
    CloudWatchResponse.put_composite_alarm = put_composite_alarm  # type: ignore[attr-defined]
    CloudWatchResponse.describe_alarms = describe_alarms  # type: ignore[method-assign]
