"""The dashboard's HTML building blocks: cell formatting."""

from __future__ import annotations

import math

import pytest

from tunewatch.dashboard._html import fmt, pre


@pytest.mark.parametrize(
    "text",
    ["days_sinceTransaction_count", "ops-robot-Team-blue-ci", "2026-11-30T08:24:44 is late"],
)
def test_a_string_with_a_t_at_index_10_that_is_no_timestamp_is_shown_verbatim(text: str) -> None:
    assert fmt(text) == text


@pytest.mark.parametrize(
    "stamp",
    ["2026-11-30T08:24:44.123456+00:00", "2026-11-30T08:24:44+00:00", "2026-11-30T08:24:44"],
)
def test_an_iso_timestamp_is_shortened_to_the_second(stamp: str) -> None:
    assert fmt(stamp) == "2026-11-30 08:24:44"


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf], ids=["nan", "infinity", "minus-infinity"]
)
def test_a_non_finite_number_is_shown_as_missing(value: float) -> None:
    """As None is, and as the JSON endpoints answer it (``null``); it used to read ``nan``."""
    assert fmt(value) == fmt(None) == "—"
    assert fmt({"p": value, "ps": [value, 0.5]}) == '{"p": null, "ps": [null, 0.5]}'
    assert "null" in pre({"p": value}) and "NaN" not in pre({"p": value})
