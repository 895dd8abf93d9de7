"""What offering a notification costs the engine, with healthy and with dead receivers; and how fast
one target's queue drains to a local receiver.

    python bench/notify.py            # about 10 seconds

Three webhook targets on 127.0.0.1, all subscribed to every transition:

- ``live``: a local aiohttp receiver answering 200;
- ``refused``: a closed port (connection refused on every attempt);
- ``silent``: a receiver that accepts the request and never answers (each attempt ends by its timeout).

``offer`` is timed with ``time.perf_counter`` around each call, on the event loop the workers share,
in ticks of 50 transitions over 100 rollouts: first with only the live target, its queue emptied
between ticks; then with all three and no waiting between ticks, so queues (the default 100 messages)
fill up and later offers take the drop path (counted), which is part of what is measured. The drain
figure is the live target alone: messages per second from ``offer`` to the receiver's 200, one connection, in order.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.notify import Transition, Trigger, build_notifier, parse_notifications
from controller.notify.secrets import SecretReader

OFFERS = 5000
#: Transitions per engine tick: a busy tick of a controller with 1,000 rollouts.
TICK = 50


class Counter:
    def __init__(self) -> None:
        self.finished: dict[tuple[str, str], int] = {}
        self.dropped: dict[str, int] = {}

    def notification_target(self, *, target: str) -> None:
        return None

    def notification(self, *, target: str, outcome: str) -> None:
        self.finished[(target, outcome)] = self.finished.get((target, outcome), 0) + 1

    def notification_dropped(self, *, target: str) -> None:
        self.dropped[target] = self.dropped.get(target, 0) + 1


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def transitions(count: int) -> list[Transition]:
    return [
        Transition(
            namespace="bench",
            name=f"api-{n % 100}",
            function_name=f"api-{n % 100}",
            alias="live",
            trigger=Trigger.WAITING_FOR_PROMOTION,
            attempt=f"{n}@1",
            at=time.time(),
            step=n,
        )
        for n in range(count)
    ]


def config(targets: dict[str, str]) -> object:
    lines = ["targets:"]
    lines += [f"  - {{name: {name}, webhook: {{url: '{url}'}}}}" for name, url in targets.items()]
    lines += ["subscriptions:"]
    lines += [f"  - {{target: {name}, on: [WaitingForPromotion]}}" for name in targets]
    lines += ["delivery: {maxAttempts: 2, attemptTimeout: 200ms}"]
    parsed, errors = parse_notifications("\n".join(lines) + "\n", file="bench.yaml")
    assert not errors, errors
    return parsed


async def measure(targets: dict[str, str], label: str, *, settle: bool) -> None:
    """Offer in ticks of ``TICK`` transitions; between ticks, wait for the queues to empty (``settle``) or
    just let the workers run once (dead receivers never empty theirs)."""
    counter = Counter()
    notifier = build_notifier(config(targets), secrets=SecretReader(environ={}), observer=counter)  # type: ignore[arg-type]
    timings: list[float] = []
    offered = transitions(OFFERS)
    async with notifier:
        for tick in range(0, OFFERS, TICK):
            for transition in offered[tick : tick + TICK]:
                started = time.perf_counter()
                notifier.offer(transition)
                timings.append(time.perf_counter() - started)
            if settle:
                await notifier.idle()
            else:
                await asyncio.sleep(0)
    timings.sort()
    p99 = timings[int(len(timings) * 0.99)]
    print(
        f"| {label} | {OFFERS} | {statistics.median(timings) * 1e6:.1f} µs | {p99 * 1e6:.1f} µs | "
        f"{timings[-1] * 1e6:.0f} µs | {sum(counter.dropped.values())} |"
    )


async def drain(url: str) -> None:
    count = 1000
    notifier = build_notifier(config({"live": url}), secrets=SecretReader(environ={}))  # type: ignore[arg-type]
    # Every offer is queued: the queue is bounded at 100, so offer in steps the worker can follow.
    async with notifier:
        started = time.perf_counter()
        for batch in range(0, count, 100):
            for transition in transitions(count)[batch : batch + 100]:
                notifier.offer(transition)
            await notifier.idle()
        seconds = time.perf_counter() - started
    print(f"\ndrain to one live local receiver: {count} messages in {seconds:.2f} s = {count / seconds:.0f} messages/s")


async def main() -> None:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    released = asyncio.Event()

    async def silent(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/live", ok)
    app.router.add_post("/silent", silent)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    print("| targets | offers | median | p99 | max | dropped |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    await measure({"live": f"{base}/live"}, "live only", settle=True)
    await measure(
        {"live": f"{base}/live", "refused": f"http://127.0.0.1:{closed_port()}/in", "silent": f"{base}/silent"},
        "live + refused + silent",
        settle=False,
    )
    await drain(f"{base}/live")
    released.set()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
