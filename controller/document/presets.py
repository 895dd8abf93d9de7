"""The CodeDeploy Lambda deployment configurations a rollout can name as ``strategy.preset``.

People copy these names from CodeDeploy, SAM or CDK in three spellings (``Canary10Percent5Minutes``,
``LambdaCanary10Percent5Minutes``, ``CodeDeployDefault.LambdaCanary10Percent5Minutes``); all three
are accepted and mapped to the short canonical one, which is what ``PresetStrategy.name`` holds.
What each preset does (its plan) is the core's business, not this module's.
"""

from __future__ import annotations

# Canonical names, in the order CodeDeploy documents them. The CRD's enum lists these with every
# prefix; a test keeps the two in step.
PRESETS: tuple[str, ...] = (
    "AllAtOnce",
    "Canary10Percent5Minutes",
    "Canary10Percent10Minutes",
    "Canary10Percent15Minutes",
    "Canary10Percent30Minutes",
    "Linear10PercentEvery1Minute",
    "Linear10PercentEvery2Minutes",
    "Linear10PercentEvery3Minutes",
    "Linear10PercentEvery10Minutes",
)

PREFIXES: tuple[str, ...] = ("", "Lambda", "CodeDeployDefault.Lambda")

_CANONICAL: dict[str, str] = {prefix + name: name for prefix in PREFIXES for name in PRESETS}


def accepted_preset_names() -> tuple[str, ...]:
    """Every spelling that ``strategy.preset`` accepts."""
    return tuple(_CANONICAL)


def canonical_preset_name(name: str) -> str:
    """``"CodeDeployDefault.LambdaCanary10Percent5Minutes"`` -> ``"Canary10Percent5Minutes"``.

    Raises ``ValueError`` for a name that is not a CodeDeploy Lambda preset.
    """
    try:
        return _CANONICAL[name]
    except KeyError:
        raise ValueError(unknown_preset_message(name)) from None


def unknown_preset_message(name: object) -> str:
    return (
        f"{name!r} is not a CodeDeploy Lambda preset; use one of {', '.join(PRESETS)}"
        " (optionally prefixed with Lambda or CodeDeployDefault.Lambda)"
    )
