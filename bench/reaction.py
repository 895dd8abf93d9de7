"""Rollback reaction, poll mode against push mode: from an alarm's state change to the alias restored.

For each N the script seeds N functions (versions 1 and 2, alias ``live`` on 1, one alarm each) and
walks every rollout to 10% on version 2, waiting for ``promote``; then one engine runs as the daemon
runs it (``Engine.run``, a 5 s tick), first polling only, then with push-mode alarm events
(``--alarm-events auto``: the same ``AlarmPush`` the daemons add to their engine, the queue and the rule
created by it). Each trial waits a random fraction of the interval (so a trial lands anywhere between
two ticks), sets one rollout's alarm to ALARM and measures, on the emulator's clock, from the alarm's
``StateUpdatedTimestamp`` to the end of the ``UpdateAlias`` that put the alias back on version 1
(the emulator's call log), so the benchmark's own polling adds nothing. The rollout is then made
ready again (alarm OK, a ``retry`` request) while the next trials use other rollouts.

The strict emulator and the fault proxy run in a subprocess (``lambda-rollouts emulator
--proxy-port``); the controller talks to the proxy, whose AWS rate quotas are on during the trials.
The controller's own API budget is raised, as in ``bench/ticks.py``, so that walking 1,000 new
rollouts to their first pause takes seconds, not minutes; in the trials its calls are few (the drift
checks, the retries of the rollouts being made ready, the rollbacks), and AWS's quotas apply at the
proxy. The limit beside each mode: push, two round trips (the tick's alarm read, the alias write)
plus the queue's delivery (the alarm's change to the message received by a long poll); poll, the
interval plus two round trips. Both measured here, medians.

Usage: ``python bench/reaction.py [N ...] [--trials T] [--interval S]`` (default 10 1000, 20 trials,
5 s). Prints a table and the machine's load; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from controller.aws import AwsSettings, Budget, make_clients
from controller.aws.budget import DEFAULT_RATES
from controller.commands.alarm_push import AlarmPush
from controller.commands.options import AlarmEvents
from controller.core.codec import encode_request, request_key
from controller.core.types import Phase, Request, Verb
from controller.observability.http import Health
from controller.observability.prometheus import Metrics
from controller.runtime.engine import Engine, EngineSettings
from controller.sources.files import FileSource

# Run as a script: the benchmarks' shared world (bench/world.py) is beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from world import Emulator, canary, emulator, seed, set_alarm

AWS_QUOTAS = [
    {"name": "lambda-control-plane", "service": "lambda", "rate": 15.0, "exclude": ["Invoke", "InvokeAsync"]},
    {"name": "describe-alarms", "service": "cloudwatch", "rate": 9.0, "operations": ["DescribeAlarms"]},
    {"name": "describe-alarm-history", "service": "cloudwatch", "rate": 3.0, "operations": ["DescribeAlarmHistory"]},
    {"name": "get-metric-data", "service": "cloudwatch", "rate": 50.0, "operations": ["GetMetricData"]},
]
ALIAS = "live"


def name_of(count: int, index: int) -> str:
    return f"react-{count}-{index:04d}"


def seed_waiting(world: Emulator, count: int, source: Path) -> None:
    """``count`` rollouts of the cost checks' shape (waiting for ``promote`` at 10%), each alarm set OK by
    hand: with no data, the evaluation leaves it so and only the benchmark moves it."""
    names = seed(world, prefix=f"react-{count}", count=count, source=source, strategy=canary(10, None, 50, None))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: set_alarm(world, f"{name}-errors", "OK"), names))


def restored(world: Emulator, function: str) -> float | None:
    """When the UpdateAlias that put ``function`` back on version 1 alone ended (emulator's clock)."""
    for call in world.calls():
        params = call["params"]
        if call["operation"] != "UpdateAlias" or call["status"] >= 300 or params.get("FunctionName") != function:
            continue
        if params.get("FunctionVersion") == "1" and not (params.get("RoutingConfig") or {}).get(
            "AdditionalVersionWeights"
        ):
            return float(call["timestamp"]) + float(call["duration_ms"]) / 1000
    return None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


@dataclass
class Limits:
    round_trip: float
    delivery: float


def measure_limits(world: Emulator) -> Limits:
    """Medians of a round trip through the proxy (GetAlias) and of a queue delivery (SetAlarmState to received)."""
    lam, cw = world.client("lambda", proxy=True), world.client("cloudwatch")
    sqs, events = world.client("sqs"), world.client("events")
    function = name_of(1, 0)  # seeded for this alone
    trips = []
    for _ in range(30):
        began = time.perf_counter()
        lam.get_alias(FunctionName=function, Name=ALIAS)
        trips.append(time.perf_counter() - began)
    url = sqs.create_queue(QueueName="react-delivery")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["aws.cloudwatch"], "detail": {"alarmName": [f"{function}-errors"]}}
    events.put_rule(Name="react-delivery", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="react-delivery", Targets=[{"Id": "q", "Arn": arn}])
    deliveries = []
    for index in range(10):
        cw.set_alarm_state(AlarmName=f"{function}-errors", StateValue=("ALARM", "OK")[index % 2], StateReason="bench")
        at = cw.describe_alarms(AlarmNames=[f"{function}-errors"])["MetricAlarms"][0]["StateUpdatedTimestamp"]
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, MaxNumberOfMessages=1).get("Messages", [])
        if messages:
            deliveries.append(time.time() - at.timestamp())
            sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    events.remove_targets(Rule="react-delivery", Ids=["q"])
    events.delete_rule(Name="react-delivery")
    sqs.delete_queue(QueueUrl=url)
    return Limits(round_trip=statistics.median(trips), delivery=statistics.median(deliveries))


async def trials(
    *, count: int, trials: int, interval: float, world: Emulator, ready: Callable[[str], bool]
) -> list[float]:
    """``trials`` rollbacks, each of a rollout that is ready, at a random instant between two ticks."""
    cw, lam = world.client("cloudwatch"), world.client("lambda")
    reactions: list[float] = []
    names = [name_of(count, index) for index in range(count)]
    turn = 0
    while len(reactions) < trials:
        waited = time.monotonic()
        while not await asyncio.to_thread(ready, names[turn % count]):
            turn += 1  # still being made ready again: the next one
            if time.monotonic() - waited > 120:
                raise RuntimeError("no rollout became ready again within 2 minutes")
            await asyncio.sleep(0.05 if turn % count else 1.0)
        name = names[turn % count]
        turn += 1
        await asyncio.sleep(random.uniform(0, interval))
        await asyncio.to_thread(world.clear_calls)
        alarm = f"{name}-errors"
        await asyncio.to_thread(cw.set_alarm_state, AlarmName=alarm, StateValue="ALARM", StateReason="bench")
        state = await asyncio.to_thread(cw.describe_alarms, AlarmNames=[alarm])
        changed = state["MetricAlarms"][0]["StateUpdatedTimestamp"].timestamp()
        deadline = time.monotonic() + 3 * interval + 10
        while (done := await asyncio.to_thread(restored, world, name)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} was not rolled back")
            await asyncio.sleep(0.01)
        reactions.append(done - changed)
        # Ready again for a later trial: alarm OK, then a retry (the version failed; only retry restarts it).
        await asyncio.to_thread(cw.set_alarm_state, AlarmName=alarm, StateValue="OK", StateReason="bench")
        arn = (await asyncio.to_thread(lam.get_function_configuration, FunctionName=name))["FunctionArn"]
        retry = Request(id=f"retry-{len(reactions)}-{turn}", verb=Verb.RETRY, at=time.time(), by="bench")
        await asyncio.to_thread(lam.tag_resource, Resource=arn, Tags={request_key(ALIAS): encode_request(retry)})
    return reactions


async def measure(count: int, *, trials_per_mode: int, interval: float, world: Emulator) -> dict[str, list[float]]:
    source = Path(tempfile.mkdtemp(prefix=f"react-{count}-"))
    began = time.monotonic()
    seed_waiting(world, count, source)
    world.quotas([])
    aws = make_clients(AwsSettings(endpoint_url=world.proxy_url), budget=Budget(dict.fromkeys(DEFAULT_RATES, 1e6)))
    engine = Engine(aws, settings=EngineSettings(interval=interval))
    await engine.apply(FileSource(source).scan())
    while not all(r.status and r.status.phase is Phase.PAUSED for r in engine.rollouts().values()):
        await engine.tick()
    print(f"N={count}: seeded and all paused at 10% in {time.monotonic() - began:.0f} s", flush=True)
    lam = world.client("lambda")

    def ready(name: str) -> bool:
        routing = lam.get_alias(FunctionName=name, Name=ALIAS).get("RoutingConfig") or {}
        status = engine.status(f"bench/{name}")
        return (
            routing.get("AdditionalVersionWeights") == {"2": 0.1}
            and status is not None
            and (status.phase is Phase.PAUSED)
        )

    world.quotas(AWS_QUOTAS)
    stop = asyncio.Event()
    loop = asyncio.create_task(engine.run(stop=stop))
    results: dict[str, list[float]] = {}
    try:
        results["poll"] = await trials(count=count, trials=trials_per_mode, interval=interval, world=world, ready=ready)
        health = Health(interval=interval)
        push = AlarmPush(engine=engine, aws=aws, settings=AlarmEvents(), metrics=Metrics(), health=health)
        push_stop = asyncio.Event()
        pushing = asyncio.create_task(push.run(push_stop))
        while not health.details().get("alarm_events", "").startswith("healthy"):
            await asyncio.sleep(0.1)
        results["push"] = await trials(count=count, trials=trials_per_mode, interval=interval, world=world, ready=ready)
        push_stop.set()
        await pushing
    finally:
        stop.set()
        await loop
        world.quotas([])
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="*", type=int, default=[10, 1000])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    random.seed(1)
    load_before = os.getloadavg()
    rows: list[tuple[int, str, list[float]]] = []
    with emulator() as world:
        seed_waiting(world, 1, Path(tempfile.mkdtemp(prefix="react-1-")))  # the function the limits use
        limits = measure_limits(world)
        for count in args.counts:
            found = asyncio.run(measure(count, trials_per_mode=args.trials, interval=args.interval, world=world))
            rows.extend((count, mode, values) for mode, values in found.items())
    load_after = os.getloadavg()
    push_limit = 2 * limits.round_trip + limits.delivery
    poll_limit = args.interval + 2 * limits.round_trip
    print(
        f"\nround trip through the proxy (GetAlias, median): {limits.round_trip * 1000:.1f} ms; "
        f"queue delivery (SetAlarmState -> message received, median): {limits.delivery * 1000:.1f} ms"
    )
    print(
        f"tick {args.interval:g} s, {args.trials} trials per row; times from the alarm's change to the alias restored\n"
    )
    print("| rollouts | mode | p50 | p90 | max | limit |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for count, mode, values in rows:
        limit = push_limit if mode == "push" else poll_limit
        what = "2 round trips + delivery" if mode == "push" else "interval + 2 round trips"
        print(
            f"| {count:,} | {mode} | {percentile(values, 0.5) * 1000:.0f} ms | {percentile(values, 0.9) * 1000:.0f} ms "
            f"| {max(values) * 1000:.0f} ms | {limit * 1000:.0f} ms ({what}) |"
        )
    print(
        f"\nload average (1, 5, 15 min): before {', '.join(f'{v:.2f}' for v in load_before)}; "
        f"after {', '.join(f'{v:.2f}' for v in load_after)} ({os.cpu_count()} CPUs)"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    sys.exit(main(sys.argv[1:]))
