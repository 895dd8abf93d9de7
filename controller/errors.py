"""Errors every layer may raise and the command line maps to exit codes.

They live in a module with no imports of its own, so ``controller.cli`` can catch them without
loading the AWS or Kubernetes layers that raise them (``lambda-rollouts --help`` stays instant).
"""

from __future__ import annotations


class UsageError(Exception):
    """A command-line problem found after parsing (a bad config file): exit 2 with this text."""
