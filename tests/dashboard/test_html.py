"""The dashboard's HTML building blocks: cell formatting."""

from __future__ import annotations

import pytest

from tunewatch.dashboard._html import fmt


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
