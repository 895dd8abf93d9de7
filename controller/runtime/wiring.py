"""Builds the shell's long-lived objects from command-line options, once, for every verb.

``run``, ``plan`` and ``get`` need the same AWS clients configured the same way (region, endpoint,
retries); keeping that here means a new option is added in one place.
"""

from __future__ import annotations

import argparse

from controller.aws import ApiObserver, AwsClients, AwsSettings, make_clients


def clients_from_args(args: argparse.Namespace, *, observer: ApiObserver | None = None) -> AwsClients:
    settings = AwsSettings(region=args.region, endpoint_url=args.aws_endpoint_url)
    return make_clients(settings, observer=observer)


def add_time_scale(parser: argparse.ArgumentParser) -> None:
    """The hidden test-only option that scales every plan duration (presets' minutes to seconds)."""
    parser.add_argument("--time-scale", type=float, default=1.0, help=argparse.SUPPRESS)
