"""Notifications: tell people when a rollout starts, waits for them, finishes or fails.

Targets (Slack, Microsoft Teams, CloudEvents webhooks, SNS) are configured once for the controller
(``--notifications FILE``, or the same YAML in a ConfigMap key in Kubernetes mode); subscriptions
route triggers to them. The engine hands each notable ``Transition`` to the ``Notifier``, which
sends from its own queue, beside the engine and never inside a reconcile: a receiver that is slow
or down costs the rollout nothing. Optional one-click promote / abort links (``links``) go with
messages of rollouts waiting for promotion. ``docs/notifications.md`` is the reference.

Shape, in the spirit of Argo's notifications engine (triggers and templates apart from services,
one delivery path for many targets):

- ``transition``: what a message is about, with an id stable across restarts (exactly once);
- ``config``: the document, its checks and ``targets_for``; ``secrets``: env and file secrets;
- ``channel``: the one seam between the queue and a target; ``slack``, ``teams``, ``webhook``,
  ``sns``: the targets, each rendering and sending; ``http``: their shared POST;
- ``delivery``: the ``Notifier`` (queues, retries, metrics, ``on_delivered``);
- ``links``: signed one-click gate tokens and their HTTP handler; ``build``: config to parts.
"""

from controller.notify.build import build_notifier, gate_signer
from controller.notify.config import NotificationConfig, load_notifications, parse_notifications, targets_for
from controller.notify.delivery import Notifier, NotifyObserver, Pending
from controller.notify.links import GateRequest, GateSigner, SubmitResult, TokenRefused, gate_routes
from controller.notify.secrets import SecretError, SecretReader, check_secrets
from controller.notify.transition import Transition, Trigger, attempt_id

__all__ = [
    "GateRequest",
    "GateSigner",
    "NotificationConfig",
    "Notifier",
    "NotifyObserver",
    "Pending",
    "SecretError",
    "SecretReader",
    "SubmitResult",
    "TokenRefused",
    "Transition",
    "Trigger",
    "attempt_id",
    "build_notifier",
    "check_secrets",
    "gate_routes",
    "gate_signer",
    "load_notifications",
    "parse_notifications",
    "targets_for",
]
