"""The drift heatmap's row labels: names were cut to their first 20 characters, so
``num_transactions_last_7d``, ``_30d`` and ``_90d`` all read ``num_transactions_las`` and
the outlined row could not be told from its neighbours. Visible labels are now distinct
(the margin widens to the longest name within a bound, longer names lose their middle to
an ellipsis), and the full name stays in each cell's tooltip."""

from __future__ import annotations

import re
from html import unescape

import pytest

from tunewatch.dashboard._svg import heatmap

AGGREGATES = [
    "num_transactions_last_7d",
    "num_transactions_last_30d",
    "num_transactions_last_90d",
    "avg_balance_over_last_3_months",
    "avg_balance_over_last_12_months",
]
LONG = [
    "customer_profile_aggregates_rolling_window_sum_of_card_spend_last_7_days",
    "customer_profile_aggregates_rolling_window_sum_of_card_spend_last_30_days",
    "customer_profile_aggregates_rolling_window_mean_of_card_spend_last_30_days",
]
MIDDLE = [f"{'a' * 30}_{k}_{'b' * 30}" for k in range(12)]  # they differ in the middle only


def _labels(names: list[str]) -> list[str]:
    svg = heatmap(
        names,
        ["2025-01-01 00:00", "2025-01-01 01:00"],
        [[0.0, 1.0] for _ in names],
        flagged=[[False, True] for _ in names],
        label="heat",
    )
    return [unescape(t) for t in re.findall(r'text-anchor="end">([^<]*)</text>', svg)][: len(names)]


@pytest.mark.parametrize(
    "names", [AGGREGATES, LONG, MIDDLE, ["x0", "x1", "__prediction__"]],
    ids=["shared-prefix", "longer-than-the-margin", "differing-in-the-middle", "short"],
)  # fmt: skip
def test_distinct_feature_names_get_distinct_visible_labels(names: list[str]) -> None:
    labels = _labels(names)
    assert len(labels) == len(names)
    assert len(set(labels)) == len(names), labels


def test_a_name_that_fits_is_shown_whole_and_a_longer_one_keeps_both_ends() -> None:
    labels = _labels(AGGREGATES + LONG[:1])
    assert labels[: len(AGGREGATES)] == AGGREGATES
    shortened = labels[-1]
    assert "…" in shortened and len(shortened) < len(LONG[0])
    head, tail = shortened.split("…")
    assert LONG[0].startswith(head) and LONG[0].endswith(tail) and tail.endswith("7_days")


def test_the_tooltip_keeps_the_full_name() -> None:
    svg = heatmap(
        LONG, ["a", "b"], [[0.1, 0.2] for _ in LONG], flagged=[[False, False]] * 3, label="h"
    )
    for name in LONG:
        assert f'data-feature="{name}"' in svg
        assert f"<title>{name} @ a: " in svg
