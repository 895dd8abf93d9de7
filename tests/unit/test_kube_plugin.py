"""``kubectl lambda-rollouts promote NAME --skip-analysis`` without ``--full`` is a usage error.

Exit code 2 (usage), like ``lambda-rollouts promote``, and before kubectl is run at all.
"""

from __future__ import annotations

import pytest

from controller.commands import kubectl as kubectl_plugin


def test_skip_analysis_without_full_is_a_usage_error_before_any_kubectl_call(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_kubectl(*args: object, **kwargs: object) -> str:
        raise AssertionError("kubectl must not be run for a usage error")

    monkeypatch.setattr(kubectl_plugin, "kubectl", no_kubectl)
    assert kubectl_plugin.main(["promote", "brand-api", "--skip-analysis"]) == 2
    assert "--skip-analysis goes with --full" in capsys.readouterr().err
