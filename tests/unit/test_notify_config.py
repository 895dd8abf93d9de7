"""The notifications config: every error at once as FILE:LINE: path: message, secrets refused inline,
secrets read from env and files (and re-read when the file changes), and routing with ``targets_for``."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from controller.notify.config import (
    NotificationConfig,
    SlackTarget,
    SnsTarget,
    Subscription,
    TeamsTarget,
    WebhookTarget,
    load_notifications,
    parse_notifications,
    targets_for,
)
from controller.notify.secrets import SecretError, SecretReader, check_secrets
from controller.notify.transition import Transition, Trigger

REPO = Path(__file__).resolve().parents[2]
KEY = "k" * 40

VALID = """\
targets:
  - name: ops
    webhook: {url: https://hooks.example.com/rollouts, secretFrom: {env: OPS_HOOK_SECRET}}
  - name: team
    slack: {urlFrom: {env: SLACK_WEBHOOK_URL}}
  - name: msteams
    teams: {urlFrom: {file: /run/secrets/teams-url}}
  - name: audit
    sns: {topicArn: "arn:aws:sns:us-east-1:123456789012:rollouts"}
subscriptions:
  - target: ops
    on: [Started, WaitingForPromotion, Promoted, RolledBack]
  - target: team
    on: [RolledBack]
    namespaces: [payments]
links:
  baseUrl: https://rollouts.example.com/
  signingKeyFrom: {env: GATE_KEY}
  ttl: 30m
"""


def parse(text: str) -> tuple[NotificationConfig | None, list[str]]:
    config, errors = parse_notifications(textwrap.dedent(text), file="n.yaml")
    return config, [str(error) for error in errors]


def transition(
    trigger: Trigger = Trigger.ROLLED_BACK, *, namespace: str = "payments", name: str = "brand-api"
) -> Transition:
    return Transition(
        namespace=namespace, name=name, function_name="brand-api", alias="prod", trigger=trigger, attempt="43@1", at=0.0
    )


# ---- the model -----------------------------------------------------------------------------------


def test_the_issue_example_and_the_shipped_example_load() -> None:
    config, errors = parse(VALID)
    assert errors == []
    assert config is not None
    ops, team, msteams, audit = config.targets
    assert isinstance(ops, WebhookTarget) and ops.url == "https://hooks.example.com/rollouts"
    assert ops.secret is not None and ops.secret.env == "OPS_HOOK_SECRET"
    assert isinstance(team, SlackTarget) and team.url.env == "SLACK_WEBHOOK_URL"
    assert isinstance(msteams, TeamsTarget) and msteams.url.file == "/run/secrets/teams-url"
    assert isinstance(audit, SnsTarget) and audit.topic_arn.endswith(":rollouts")
    # A bare `on` is YAML 1.1's boolean true; it is still read as the subscription's triggers.
    assert config.subscriptions[1] == Subscription(
        target="team", on=frozenset({Trigger.ROLLED_BACK}), namespaces=("payments",)
    )
    assert config.links is not None
    assert (config.links.base_url, config.links.ttl) == ("https://rollouts.example.com", 1800.0)
    # Where each secret is named, for the errors found when it is read.
    assert str(team.url.origin.error("x")) == "n.yaml:5: targets[1].slack.urlFrom.env: x"

    shipped, errors = load_notifications(str(REPO / "examples/config/notifications.yaml"))
    assert [str(error) for error in errors] == []
    assert shipped is not None and {target.name for target in shipped.targets} >= {"ops", "audit"}


def test_targets_for_matches_trigger_namespace_name_globs_and_opt_in() -> None:
    config, _ = parse(
        """\
        targets:
          - {name: all, webhook: {url: https://a.example.com}}
          - {name: payments, webhook: {url: https://b.example.com}}
          - {name: brands, webhook: {url: https://c.example.com}}
          - {name: chosen, webhook: {url: https://d.example.com}}
        subscriptions:
          - {target: all, on: [RolledBack, Promoted]}
          - {target: payments, on: [RolledBack], namespaces: [payments]}
          - {target: brands, on: [RolledBack], names: ["brand-*"]}
          - {target: chosen, on: [RolledBack], optIn: true, namespaces: [payments]}
          - {target: all, on: [RolledBack]}
        """
    )
    assert config is not None
    assert targets_for(config, transition()) == ("all", "payments", "brands")
    assert targets_for(config, transition(), rollout_opt_in=["chosen"]) == ("all", "payments", "brands", "chosen")
    # An opt-in still obeys the subscription's filters: another namespace cannot opt in to it.
    assert targets_for(config, transition(namespace="search"), rollout_opt_in=["chosen"]) == ("all", "brands")
    assert targets_for(config, transition(name="checkout")) == ("all", "payments")
    assert targets_for(config, transition(Trigger.PROMOTED)) == ("all",)
    assert targets_for(config, transition(Trigger.STARTED)) == ()


# ---- errors --------------------------------------------------------------------------------------


def test_every_error_at_once_with_file_line_and_path() -> None:
    _, errors = parse(
        """\
        targets:
          - name: Ops
            webhook: {url: "ftp://hooks.example.com"}
          - name: team
            slack: {urlFrom: {env: SLACK}}
            teams: {urlFrom: {env: TEAMS}}
          - name: team
            sns: {topicArn: "arn:aws:sqs:us-east-1:123456789012:q"}
          - name: hook
            webhook:
              url: https://hooks.example.com
              headers: {Content-Type: text/plain}
        subscriptions:
          - target: opss
            on: [RolledBack, Exploded]
          - target: hook
            on: []
            namespacez: [payments]
        links:
          baseUrl: http://rollouts.example.com
          signingKeyFrom: {env: GATE_KEY, file: /k}
          ttl: 30d
        delivery: {queueSize: 0, attemptTimeout: 0s}
        """
    )
    assert errors == [
        "n.yaml:2: targets[0].name: 'Ops' is not a target name: lowercase letters, digits and -, at most 63 "
        "(like a Kubernetes name)",
        "n.yaml:3: targets[0].webhook.url: the URL is not an https:// URL",
        "n.yaml:4: targets[1]: exactly one of slack, teams, webhook, sns is required (found slack, teams)",
        "n.yaml:7: targets[2].name: 'team' is also the name of targets[1]",
        "n.yaml:8: targets[2].sns.topicArn: 'arn:aws:sqs:us-east-1:123456789012:q' is not an SNS topic ARN: "
        "arn:aws:sns:REGION:ACCOUNT:NAME",
        "n.yaml:12: targets[3].webhook.headers.Content-Type: Content-Type is set by the controller itself and "
        "cannot be configured",
        "n.yaml:14: subscriptions[0].target: unknown target 'opss' (targets: Ops, team, hook)",
        "n.yaml:15: subscriptions[0].on[1]: 'Exploded' is not one of Started, WaitingForPromotion, Promoted, "
        "RolledBack, AnalysisInconclusive, DriftDetected, Invalid, Orphaned",
        "n.yaml:17: subscriptions[1].on: [] should be non-empty",
        "n.yaml:18: subscriptions[1].namespacez: unknown field (did you mean namespaces?)",
        "n.yaml:20: links.baseUrl: the URL must be https:// (plain http:// is accepted only for localhost)",
        "n.yaml:21: links.signingKeyFrom: exactly one of env, file is required (found env, file)",
        "n.yaml:22: links.ttl: '30d' is not a duration such as 90s, 5m, 1h30m",
        "n.yaml:23: delivery.attemptTimeout: must be more than 0s",
        "n.yaml:23: delivery.queueSize: 0 is less than the minimum of 1",
    ]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "slack: {url: https://hooks.slack.com/services/T000/B000/XXXX}",
            "n.yaml:3: targets[0].slack.url: a Slack incoming-webhook URL is a secret: keep it out of this file "
            "and use urlFrom: {env: NAME} or {file: PATH}",
        ),
        (
            "teams: {url: https://example.webhook.office.com/webhookb2/x}",
            "n.yaml:3: targets[0].teams.url: a Microsoft Teams incoming-webhook URL is a secret: keep it out of "
            "this file and use urlFrom: {env: NAME} or {file: PATH}",
        ),
        (
            "webhook: {url: https://hooks.slack.com/services/T000/B000/XXXX}",
            "n.yaml:3: targets[0].webhook.url: this URL carries a Slack incoming-webhook URL, a secret: keep it "
            "out of this file and use urlFrom: {env: NAME} or {file: PATH}",
        ),
        (
            "webhook: {url: 'https://prod-01.westeurope.logic.azure.com/workflows/1/triggers/manual?sig=abc'}",
            "n.yaml:3: targets[0].webhook.url: this URL carries a Power Automate (Teams workflow) URL, a secret: "
            "keep it out of this file and use urlFrom: {env: NAME} or {file: PATH}",
        ),
        (
            "webhook: {url: 'https://hooks.example.com/in?api_key=abc'}",
            "n.yaml:3: targets[0].webhook.url: this URL carries a credential in its query (api_key), a secret: "
            "keep it out of this file and use urlFrom: {env: NAME} or {file: PATH}",
        ),
        (
            "webhook: {url: 'https://bob:hunter2@hooks.example.com/in'}",
            "n.yaml:3: targets[0].webhook.url: this URL carries a user name or password, a secret: keep it out "
            "of this file and use urlFrom: {env: NAME} or {file: PATH}",
        ),
        (
            "webhook: {url: https://hooks.example.com, secret: s3cr3t}",
            "n.yaml:3: targets[0].webhook.secret: a shared secret written here ends up in git and in the ConfigMap: "
            "keep it out of this file and use secretFrom: {env: NAME} or {file: PATH}",
        ),
        (
            "webhook: {url: https://hooks.example.com, headers: {Authorization: Bearer abc}}",
            "n.yaml:3: targets[0].webhook.headers.Authorization: the value of Authorization authenticates: keep "
            "it out of this file and use valueFrom: {env: NAME} or {file: PATH}",
        ),
    ],
)
def test_a_secret_written_inline_is_an_error_naming_the_from_field(section: str, expected: str) -> None:
    config, errors = parse(
        f"""\
        targets:
          - name: t
            {section}
        subscriptions: []
        """
    )
    assert config is None
    assert expected in errors
    # The schema's own "unknown field" at the same place is replaced, not repeated.
    assert not any("unknown field" in error and error.startswith(expected.split(": ")[0] + ": ") for error in errors)
    # And the error never quotes the secret.
    for secret in ("XXXX", "hunter2", "s3cr3t", "Bearer abc", "sig=abc", "api_key=abc"):
        assert all(secret not in error for error in errors)


def test_an_inline_signing_key_is_refused() -> None:
    _, errors = parse(
        """\
        targets: [{name: t, webhook: {url: https://h.example.com}}]
        subscriptions: []
        links: {baseUrl: https://r.example.com, signingKey: abc}
        """
    )
    assert (
        "n.yaml:3: links.signingKey: the signing key is a secret: keep it out of this file and use signingKeyFrom: "
        "{env: NAME} or {file: PATH}"
    ) in errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "targets: [\n",
            "n.yaml:2: yaml: expected the node content, but found '<stream end>' "
            "(while parsing a flow node started at line 2)",
        ),
        ("", "n.yaml: empty: expected a mapping with targets and subscriptions"),
        ("- a\n", "n.yaml:1: expected a mapping with targets and subscriptions, got list"),
        ("targets: []\ntargets: []\nsubscriptions: []\n", "n.yaml:2: targets: duplicate key (first given at line 1)"),
        ("kind: LambdaRollout\n", "n.yaml:1: kind: this is a LambdaRollout, not a notifications config"),
        ("subscriptions: []\n---\na: 1\n", "n.yaml:3: more than one YAML document: the config is one mapping"),
    ],
)
def test_documents_that_are_not_a_config(text: str, expected: str) -> None:
    config, errors = parse(text)
    assert config is None
    assert expected in errors


def test_a_missing_file_is_one_error() -> None:
    config, errors = load_notifications("/nonexistent/notifications.yaml")
    assert config is None
    assert [str(error) for error in errors] == ["/nonexistent/notifications.yaml: No such file or directory"]


# ---- secrets -------------------------------------------------------------------------------------


def test_check_secrets_reports_each_unreadable_secret_in_one_line_without_its_value(tmp_path: Path) -> None:
    config, _ = parse(
        VALID.replace("/run/secrets/teams-url", str(tmp_path / "teams-url")).replace("GATE_KEY", "GATE_KEY_SHORT")
    )
    assert config is not None
    environ = {"SLACK_WEBHOOK_URL": "ftp://hooks.slack.com/services/SECRETPATH", "GATE_KEY_SHORT": "short-key-value"}
    errors = [str(error) for error in check_secrets(config, SecretReader(environ=environ))]
    assert errors == [
        "n.yaml:3: targets[0].webhook.secretFrom.env: environment variable OPS_HOOK_SECRET is not set",
        "n.yaml:5: targets[1].slack.urlFrom.env: the URL in environment variable SLACK_WEBHOOK_URL is not an "
        "https:// URL",
        f"n.yaml:7: targets[2].teams.urlFrom.file: file {tmp_path}/teams-url: No such file or directory",
        "n.yaml:18: links.signingKeyFrom.env: the signing key in environment variable GATE_KEY_SHORT is shorter "
        "than 32 bytes; generate one with: openssl rand -base64 32",
    ]
    assert not any("SECRETPATH" in error or "short-key-value" in error for error in errors)

    (tmp_path / "teams-url").write_text("https://example.webhook.office.com/x\n")
    environ.update(OPS_HOOK_SECRET="s", SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T/B/X", GATE_KEY_SHORT=KEY)
    assert check_secrets(config, SecretReader(environ=environ)) == []


def test_a_secret_file_is_read_again_when_it_changes_and_trimmed(tmp_path: Path) -> None:
    config, _ = parse(VALID.replace("/run/secrets/teams-url", str(tmp_path / "teams-url")))
    assert config is not None
    target = config.targets[2]
    assert isinstance(target, TeamsTarget)
    reader = SecretReader(environ={})
    path = tmp_path / "teams-url"
    path.write_text("https://one.example.com/a\n")
    assert reader.read(target.url) == "https://one.example.com/a"
    # A Kubernetes Secret is rotated by swapping the file: another inode, another mtime.
    replacement = tmp_path / "teams-url.new"
    replacement.write_text("https://two.example.com/b")
    os.replace(replacement, path)
    assert reader.read(target.url) == "https://two.example.com/b"
    path.write_text("   \n")
    with pytest.raises(SecretError, match=f"^file {path} is empty$"):
        reader.read(target.url)
