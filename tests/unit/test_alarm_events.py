"""The pure parts of push-mode alarms: the rule's pattern within EventBridge's size limit, and the messages.

``alarm_pattern`` must never exceed the limit and never miss a watched alarm, whatever the names
(hypothesis); the fallbacks (prefixes, then every alarm) are checked on realistic sets, 1,000 alarms
among them. ``parse_alarm_change`` reads AWS's documented event (and the emulator's), unwraps an SNS
notification and refuses anything else with a reason; ``alarm_left_or_entered`` reads history items.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis.alarm_events import (
    PATTERN_LIMIT,
    AlarmPattern,
    Matching,
    NotAnAlarmChange,
    alarm_pattern,
    parse_alarm_change,
)
from controller.aws.cloudwatch import alarm_left_or_entered


def matches(pattern: AlarmPattern, name: str) -> bool:
    """Whether EventBridge would deliver ``name``'s state change under ``pattern`` (its alarmName matchers)."""
    parsed = json.loads(pattern.text)
    assert parsed["source"] == ["aws.cloudwatch"]
    assert parsed["detail-type"] == ["CloudWatch Alarm State Change"]
    if pattern.matching is Matching.NONE:
        return False  # the rule is disabled
    if "detail" not in parsed:
        return True
    for matcher in parsed["detail"]["alarmName"]:
        if matcher == name or (isinstance(matcher, dict) and name.startswith(matcher["prefix"])):
            return True
    return False


# ---- the pattern --------------------------------------------------------------------------------------------------


def test_names_that_fit_are_matched_exactly() -> None:
    pattern = alarm_pattern(["checkout-latency", "checkout-errors", "checkout-errors"])
    assert pattern.matching is Matching.NAMES
    assert pattern.state == "ENABLED"
    assert pattern.names == ("checkout-errors", "checkout-latency")
    assert json.loads(pattern.text) == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": ["checkout-errors", "checkout-latency"]},
    }
    assert ", " not in pattern.text and ": " not in pattern.text  # compact: the quota counts characters


def test_no_alarm_disables_the_rule() -> None:
    pattern = alarm_pattern([])
    assert (pattern.matching, pattern.state) == (Matching.NONE, "DISABLED")
    assert "detail" not in json.loads(pattern.text)  # EventBridge refuses an empty list


def test_a_thousand_alarms_fall_back_to_their_shared_prefixes() -> None:
    teams = ["payments", "checkout", "search", "identity", "catalog"]
    names = [f"{team}-api-{n:03d}-{kind}" for team in teams for n in range(100) for kind in ("errors", "p99")]
    assert len(names) == 1000
    started = time.perf_counter()
    pattern = alarm_pattern(names)
    seconds = time.perf_counter() - started
    shape = f"{len(pattern.prefixes)} prefixes, {len(pattern.text)} characters"
    print(f"\n1,000 alarm names -> {shape}, in {seconds * 1000:.1f} ms")
    assert pattern.matching is Matching.PREFIXES
    assert len(pattern.text) <= PATTERN_LIMIT
    assert all(matches(pattern, name) for name in names)
    # The longest prefixes first, only as many as needed: each stays within one team's API alarms
    # (e.g. "catalog-api-00" for ten of them, "search-api-061-" for two), none spans teams or services.
    assert "search-api-061-" in pattern.prefixes and "catalog-api-00" in pattern.prefixes
    assert all(prefix.split("-api-0")[0] in teams for prefix in pattern.prefixes)
    assert not matches(pattern, "billing-api-000-errors")
    assert not matches(pattern, "payments-web-000-errors")


def test_names_no_other_shares_stay_exact_beside_the_prefixes() -> None:
    names = [f"payments-{n:02d}" for n in range(40)] + ["search-errors"]
    pattern = alarm_pattern(names, limit=200)
    assert pattern.matching is Matching.PREFIXES
    assert "search-errors" in pattern.names
    assert all(matches(pattern, name) for name in names)
    assert not matches(pattern, "search-latency")


def test_when_not_even_one_letter_prefixes_fit_every_alarm_change_is_matched() -> None:
    names = [f"{letter}{n}" for letter in "abcdefghijklmnopqrstuvwxyz" for n in range(2)]
    pattern = alarm_pattern(names, limit=150)
    assert pattern.matching is Matching.ALL
    assert "detail" not in json.loads(pattern.text)
    assert all(matches(pattern, name) for name in names)


@settings(max_examples=200, deadline=None)
@given(
    names=st.sets(st.text(alphabet="abc-_.09XY", min_size=1, max_size=40), max_size=300),
    limit=st.integers(min_value=120, max_value=4096),
)
def test_the_pattern_fits_the_limit_and_matches_every_watched_alarm(names: set[str], limit: int) -> None:
    pattern = alarm_pattern(names, limit=limit)
    assert len(pattern.text) <= limit
    assert all(matches(pattern, name) for name in names)
    assert (pattern.matching is Matching.NONE) == (not names)


# ---- messages -----------------------------------------------------------------------------------------------------

#: AWS's documented example ("Alarm events and EventBridge", single metric alarm), reasonData shortened.
AWS_EXAMPLE: dict[str, Any] = {
    "version": "0",
    "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
    "detail-type": "CloudWatch Alarm State Change",
    "source": "aws.cloudwatch",
    "account": "123456789012",
    "time": "2019-10-02T17:04:40Z",
    "region": "us-east-1",
    "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh"],
    "detail": {
        "alarmName": "ServerCpuTooHigh",
        "configuration": {"description": "Goes into alarm when server CPU utilization is too high!", "metrics": []},
        "previousState": {
            "reason": "Threshold Crossed: 1 out of the last 1 datapoints was not greater than the threshold (50.0)",
            "reasonData": '{"version":"1.0"}',
            "timestamp": "2019-10-01T13:56:40.987+0000",
            "value": "OK",
        },
        "state": {
            "reason": "Threshold Crossed: 1 out of the last 1 datapoints was greater than the threshold (50.0)",
            "reasonData": '{"version":"1.0"}',
            "timestamp": "2019-10-02T17:04:40.989+0000",
            "value": "ALARM",
        },
    },
}


def test_parses_the_documented_event() -> None:
    change = parse_alarm_change(json.dumps(AWS_EXAMPLE), received_at=1570035881.5)
    assert change.name == "ServerCpuTooHigh"
    assert (change.state, change.previous) == ("ALARM", "OK")
    assert change.at == pytest.approx(1570035880.989)  # the state change itself, not the envelope's second
    assert change.reason.startswith("Threshold Crossed")
    assert change.received_at == 1570035881.5


def test_unwraps_an_sns_notification_and_falls_back_to_the_envelope_time() -> None:
    event = json.loads(json.dumps(AWS_EXAMPLE))
    del event["detail"]["state"]["timestamp"]
    notification = {"Type": "Notification", "MessageId": "m-1", "Message": json.dumps(event)}
    change = parse_alarm_change(json.dumps(notification), received_at=0.0)
    assert (change.name, change.at) == ("ServerCpuTooHigh", pytest.approx(1570035880.0))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({**AWS_EXAMPLE, "source": "aws.ec2"}), "not a 'CloudWatch Alarm State Change' event"),
        (json.dumps({**AWS_EXAMPLE, "detail-type": "CloudWatch Alarm Configuration Change"}), "not a"),
        (json.dumps({**AWS_EXAMPLE, "detail": {"alarmName": "x"}}), "no detail.state"),
        (json.dumps({**AWS_EXAMPLE, "detail": {**AWS_EXAMPLE["detail"], "alarmName": ""}}), "no detail.alarmName"),
        (
            json.dumps({**AWS_EXAMPLE, "detail": {**AWS_EXAMPLE["detail"], "state": {"value": "FIRING"}}}),
            "unknown alarm state 'FIRING'",
        ),
        (
            json.dumps(
                {**AWS_EXAMPLE, "detail": {**AWS_EXAMPLE["detail"], "state": {"value": "OK", "timestamp": "soon"}}}
            ),
            "unreadable timestamp 'soon'",
        ),
    ],
)
def test_anything_else_is_refused_with_a_reason(body: str, why: str) -> None:
    with pytest.raises(NotAnAlarmChange, match=why):
        parse_alarm_change(body, received_at=0.0)


# ---- history items ------------------------------------------------------------------------------------------------


def history_item(old: str, new: str, *, data: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {"AlarmName": "a", "HistorySummary": f"Alarm updated from {old} to {new}"}
    if data:
        item["HistoryData"] = json.dumps(
            {"version": "1.0", "oldState": {"stateValue": old}, "newState": {"stateValue": new}}
        )
    return item


@pytest.mark.parametrize("data", [True, False])
def test_history_items_into_or_out_of_alarm(data: bool) -> None:
    assert alarm_left_or_entered(history_item("OK", "ALARM", data=data))
    assert alarm_left_or_entered(history_item("ALARM", "OK", data=data))
    assert alarm_left_or_entered(history_item("ALARM", "INSUFFICIENT_DATA", data=data))
    assert not alarm_left_or_entered(history_item("OK", "INSUFFICIENT_DATA", data=data))
    assert not alarm_left_or_entered({"AlarmName": "a", "HistorySummary": 'Alarm "a" updated'})
