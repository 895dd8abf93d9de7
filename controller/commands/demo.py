"""PLACEHOLDER: the 'demo' verb; replaced by its real implementation."""

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser, **_: Any) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("not available yet")
    return 2
