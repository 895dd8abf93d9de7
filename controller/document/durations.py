"""Durations as written in documents (``90s``, ``5m``, ``1h30m``, ``250ms``) and their value in seconds.

The grammar is the one of the CRD's ``pattern`` for duration fields (a test pins them together):
one or more ``<number><unit>`` parts, units ``ms``, ``s``, ``m`` and ``h``. Go's ``time.Duration``
strings without ``us``/``ns`` are accepted, which is what people used to Kubernetes write.
"""

from __future__ import annotations

import re
from decimal import Decimal

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_WHOLE = re.compile(DURATION_PATTERN)
_MILLISECONDS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}


def is_duration(text: str) -> bool:
    return _WHOLE.fullmatch(text) is not None


def parse_duration(text: str) -> float:
    """``"90s"`` -> ``90.0``; ``"1h30m"`` -> ``5400.0``. Raises ``ValueError`` on anything else.

    The parts are summed exactly (``Decimal``) and rounded once, so ``1h2m3s4ms`` is the float
    nearest to 3723.004 rather than the sum of four rounded floats.
    """
    if not is_duration(text):
        raise ValueError(f"{text!r} is not a duration such as 90s, 5m, 1h30m")
    total = sum((Decimal(number) * _MILLISECONDS[unit] for number, unit in _PART.findall(text)), Decimal(0))
    return float(total / 1000)


def format_duration(seconds: float) -> str:
    """The shortest spelling of ``seconds`` (to the millisecond): ``5400`` -> ``1h30m``, ``0`` -> ``0s``."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    remaining = round(Decimal(str(seconds)) * 1000)
    parts = []
    for unit in ("h", "m", "s", "ms"):
        count, remaining = divmod(remaining, _MILLISECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
