"""A learned box after a narrow space edit: narrowing one parameter so that history's
best configurations (logistic with C 20–25) fell outside the space dropped the box of
every parameter ("no best configuration is valid here: full space"), gradient
boosting's too, though 14 of its trials were still valid. The box is drawn from the
best of the configurations still valid in the new space."""

from __future__ import annotations

from typing import Any

import pytest

from retune.space import SearchSpace, parse_search_space
from retune.warmstart import History, HistoryTrial, LearnedBox, NumericBound


def _space(c_low: float, c_high: float) -> SearchSpace:
    return parse_search_space(
        {
            "name": "families",
            "params": {
                "estimator": {
                    "type": "categorical",
                    "choices": ["logistic", "gradient_boosting"],
                    "when": {
                        "logistic": {
                            "C": {"type": "float", "low": c_low, "high": c_high, "log": True}
                        },
                        "gradient_boosting": {
                            "gb_n_estimators": {"type": "int", "low": 10, "high": 200},
                            "gb_max_depth": {"type": "int", "low": 1, "high": 8},
                        },
                    },
                }
            },
        }
    )


def _history() -> History:
    """Six best: logistic with C 20–25; then 14 gradient-boosting trials, 110.. trees and
    depth 2–4; last, five logistic trials with C 1."""
    trials = [
        HistoryTrial(
            study_name="s",
            number=100 + j,
            params={"estimator": "logistic", "C": 20.0 + j},
            value=0.30 + j / 1000,
        )
        for j in range(6)
    ]
    gb: list[dict[str, Any]] = [
        {
            "estimator": "gradient_boosting",
            "gb_n_estimators": 100 + 10 * (i % 5),
            "gb_max_depth": 2 + i % 3,
        }
        for i in range(1, 15)
    ]
    trials += [
        HistoryTrial(study_name="s", number=i, params=p, value=0.31 + i / 1000)
        for i, p in enumerate(gb, start=1)
    ]
    trials += [
        HistoryTrial(
            study_name="s", number=i, params={"estimator": "logistic", "C": 1.0}, value=0.5
        )
        for i in range(15, 20)
    ]
    return History.from_trials(trials)


def test_narrowing_one_parameter_keeps_the_boxes_of_the_branches_still_valid() -> None:
    strategy = LearnedBox(top_fraction=0.2, min_configs=3, margin=0.0, restrict_choices=False)
    plan = strategy.plan(_history(), _space(0.5, 2.0))
    # the 19 valid configurations' best fifth: boosting trials 1-4 (110-140 trees, depth 2-4)
    assert plan.box_for("gb_n_estimators") == NumericBound(
        name="gb_n_estimators", low=110.0, high=140.0
    )
    assert plan.box_for("gb_max_depth") == NumericBound(name="gb_max_depth", low=2.0, high=4.0)
    assert plan.box_for("C") is None  # its valid trials all have C 1: no interval to keep
    assert not any("full space" in n for n in plan.notes)
    assert any(
        "left out 5 best configuration(s) invalid in space 'families'" in n for n in plan.notes
    ), plan.notes


def test_a_branch_with_no_valid_best_is_boxed_around_its_own_valid_trials() -> None:
    """C narrowed to [0.5, 2]: its valid trials (C 1) box it, with the margin."""
    plan = LearnedBox(top_fraction=0.2, min_configs=3, margin=0.1).plan(
        _history(), _space(0.5, 2.0)
    )
    box = plan.box_for("C")
    assert box is not None and box.low < 1.0 < box.high
    assert 0.5 <= box.low and box.high <= 2.0
    assert plan.box_for("gb_n_estimators") is not None


def test_as_tuned_the_box_is_the_best_fifth_of_history() -> None:
    """Unchanged space: the box is the history's own best fifth, logistic C 20-24."""
    plan = LearnedBox(top_fraction=0.2, min_configs=3, margin=0.0).plan(
        _history(), _space(1e-3, 100.0)
    )
    box = plan.box_for("C")
    assert box is not None and (box.low, box.high) == pytest.approx((20.0, 24.0), rel=1e-12)
    assert not any("left out" in n for n in plan.notes)


def test_a_space_no_historical_configuration_is_valid_in_is_searched_whole() -> None:
    space = parse_search_space(
        {
            "name": "other",
            "params": {"estimator": {"type": "categorical", "choices": ["extra_trees"]}},
        }
    )
    plan = LearnedBox().plan(_history(), space)
    assert plan.is_empty
    assert plan.notes == ("no historical configuration is valid in space 'other': full space",)
