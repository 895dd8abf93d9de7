"""Durations: the spellings people write, exact sums, and a round trip through the shortest form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.document.durations import format_duration, is_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        ("1m30s500ms", 90.5),
        ("1h2m3s4ms", 3723.004),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 m", "-5m", "5d", "m5", "1h 30m", "1.m", ".5s", "5M"])
def test_rejects(text: str) -> None:
    assert not is_duration(text)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (5400, "1h30m"), (0.5, "500ms"), (86400, "24h")])
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**10))
def test_round_trip_to_the_millisecond(milliseconds: int) -> None:
    text = format_duration(milliseconds / 1000)
    assert is_duration(text)
    assert parse_duration(text) == milliseconds / 1000


@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h"])), min_size=1, max_size=5))
def test_parts_add_up(parts: list[tuple[int, str]]) -> None:
    unit_ms = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
    text = "".join(f"{count}{unit}" for count, unit in parts)
    assert parse_duration(text) == sum(count * unit_ms[unit] for count, unit in parts) / 1000
