"""``lambda-rollouts emulator``: run the strict local AWS (and optionally the fault proxy).

One command gives developers, the demo and CI the same strict moto extension the tests use,
so behaviour seen locally matches what the controller meets in AWS.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=5000, help="port of the emulator (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--provisioned-delay",
        type=float,
        default=None,
        metavar="S",
        help="seconds provisioned concurrency stays IN_PROGRESS before READY",
    )
    parser.add_argument(
        "--alarm-period-scale",
        type=float,
        default=None,
        metavar="X",
        help="wall seconds per second of alarm period (default 1: a 60 s alarm is evaluated every 60 s)",
    )
    parser.add_argument(
        "--proxy-port",
        type=int,
        default=None,
        metavar="P",
        help="also start the fault-injection proxy on this port, with AWS's rate quotas",
    )


def run(args: argparse.Namespace) -> int:
    from controller.emulator import Emulator, EmulatorSettings
    from controller.emulator.proxy import FaultProxy, Quota

    settings = EmulatorSettings()
    if args.provisioned_delay is not None:
        settings.provisioned_concurrency_delay = args.provisioned_delay
    if args.alarm_period_scale is not None:
        settings.alarm_period_scale = args.alarm_period_scale
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    emulator = Emulator.start(port=args.port, host=args.host, settings=settings)
    proxy = None
    print(f"emulator listening on {emulator.url}", flush=True)
    if args.proxy_port is not None:
        proxy = FaultProxy.start(
            upstream=emulator.url, quotas=Quota.aws_defaults(), port=args.proxy_port, host=args.host
        )
        print(f"fault proxy listening on {proxy.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if proxy is not None:
            proxy.stop()
        emulator.stop()
    return 0
