"""EventBridge rule calls: the one rule that sends CloudWatch alarm state changes to the controller's queue.

CloudWatch publishes every alarm state change on the account's *default* event bus (the only bus AWS
services publish to), so every call here addresses the default bus. The controller owns one rule
there (``controller.analysis.alarm_events``): it reads it (``DescribeRule``, None when there is none),
writes its pattern (``PutRule`` creates or replaces it), and checks and sets its SQS target
(``ListTargetsByRule``, ``PutTargets``). A target entry EventBridge refuses inside a successful
``PutTargets`` answer (``FailedEntries``) is raised as an ``AwsError`` with EventBridge's code.
All calls count against the ``"events"`` budget family (AWS: 50 TPS per account for every
EventBridge API but PutEvents).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.aws.calls import ApiCaller
from controller.aws.errors import AwsError, NotFound

__all__ = ["FAMILY", "EventsAdapter", "Rule", "Target"]

FAMILY = "events"
#: ListTargetsByRule returns at most 100 targets a page.
_TARGETS_PAGE = 100


@dataclass(frozen=True)
class Rule:
    """A rule as read: its ARN, event pattern (JSON text, "" for a schedule rule) and ENABLED / DISABLED."""

    name: str
    arn: str
    event_pattern: str
    state: str


@dataclass(frozen=True)
class Target:
    """One target of a rule; ``rewritten`` when it sends something other than the event itself."""

    id: str
    arn: str
    rewritten: bool


class EventsAdapter:
    """Async EventBridge rule operations on the default bus."""

    def __init__(self, caller: ApiCaller) -> None:
        self._caller = caller

    async def describe_rule(self, name: str) -> Rule | None:
        """The rule called ``name``, or None if there is none."""
        try:
            response = await self._caller.call("DescribeRule", family=FAMILY, Name=name)
        except NotFound:
            return None
        return Rule(
            name=str(response["Name"]),
            arn=str(response["Arn"]),
            event_pattern=str(response.get("EventPattern") or ""),
            state=str(response.get("State") or ""),
        )

    async def put_rule(self, *, name: str, event_pattern: str, state: str = "ENABLED", description: str = "") -> str:
        """Create or replace the rule ``name`` with ``event_pattern`` (JSON text) and ``state``; returns its ARN."""
        response = await self._caller.call(
            "PutRule", family=FAMILY, Name=name, EventPattern=event_pattern, State=state, Description=description
        )
        return str(response["RuleArn"])

    async def targets(self, rule: str) -> list[Target]:
        """Every target of ``rule`` (pages followed)."""
        found: list[Target] = []
        token: str | None = None
        while True:
            page: dict[str, Any] = {"NextToken": token} if token else {}
            response = await self._caller.call(
                "ListTargetsByRule", family=FAMILY, Rule=rule, Limit=_TARGETS_PAGE, **page
            )
            for raw in response.get("Targets") or []:
                found.append(
                    Target(
                        id=str(raw["Id"]),
                        arn=str(raw["Arn"]),
                        rewritten=bool(raw.get("Input") or raw.get("InputPath") or raw.get("InputTransformer")),
                    )
                )
            token = response.get("NextToken")
            if not token:
                return found

    async def put_target(self, *, rule: str, target_id: str, arn: str) -> None:
        """Make ``arn`` the target ``target_id`` of ``rule``, receiving each matched event as it is."""
        response = await self._caller.call(
            "PutTargets", family=FAMILY, Rule=rule, Targets=[{"Id": target_id, "Arn": arn}]
        )
        for failed in response.get("FailedEntries") or []:
            raise AwsError(
                code=str(failed.get("ErrorCode") or "FailedEntry"),
                message=str(failed.get("ErrorMessage") or ""),
                operation="PutTargets",
            )
