"""The safe-range gate checks every recorded name against its declaration, whichever
branch declares it, and a set the pipeline would not build (an unknown name, a choice it
does not take) is not checked at all rather than passed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from retune_data import small_space

from retune import SearchSpaceError
from retune.space import build_pipeline, load_search_space

SPACES = Path(__file__).resolve().parents[2] / "configs" / "search_spaces"
BINARY = SPACES / "binary_tabular.yaml"
REGRESSION = SPACES / "regression_tabular.yaml"


def test_a_parameter_whose_parent_was_left_out_is_checked_under_the_default_parent() -> None:
    """`{'C': 1000.0}` builds LogisticRegression(C=1000) (the default estimator), and the
    gate skipped C because `estimator` was absent."""
    space = load_search_space(BINARY)
    assert build_pipeline({"C": 1000.0}, n_features=4, seed=0).steps[-1][1].C == 1000.0
    assert space.outside_safe_ranges({"C": 1000.0}) == [
        "`C` = 1000.0 is outside its safe range [0.001, 10.0]"
    ]
    assert space.outside_safe_ranges({"C": 5.0}) == []


def test_an_absent_parameter_is_not_checked_at_the_pipeline_s_default() -> None:
    """Read at the pipeline's defaults, a regression model registered by hand with ``{}``
    (the CLI's default) or without an estimator was the default ``logistic`` estimator,
    never a safe regression choice: it could not be registered as champion and every
    promotion waited for an approver."""
    space = load_search_space(REGRESSION)
    assert space.outside_safe_ranges({}) == []
    assert space.outside_safe_ranges({"alpha": 0.5}) == []
    assert space.outside_safe_ranges({"alpha": 500.0}) == [
        "`alpha` = 500.0 is outside its safe range [0.01, 100.0]"
    ]
    assert small_space().outside_safe_ranges({"estimator": "logistic", "C": 1.0}) == []


@pytest.mark.parametrize(
    "params",
    [
        {"estimator": "logistic", "model__C": 1000.0},
        {"estimator": "gradient_boosting", "model__max_depth": 50},
        {"scaler": "standard", "estimator": "logistic", "C": 1.0, "n_neighbours": 3},
    ],
    ids=["sklearn-style-C", "sklearn-style-max-depth", "extra-unknown-name"],
)
def test_a_name_the_pipeline_does_not_have_leaves_the_safe_ranges_unchecked(
    params: dict[str, Any],
) -> None:
    """The gate skipped names it did not know and answered "all safe"."""
    space = load_search_space(BINARY)
    unknown = next(name for name in params if "__" in name or name == "n_neighbours")
    with pytest.raises(SearchSpaceError, match=rf"unknown pipeline parameter\(s\) \['{unknown}'\]"):
        space.outside_safe_ranges(params)


def test_a_choice_the_pipeline_does_not_take_leaves_the_safe_ranges_unchecked() -> None:
    """`Logistic` is no estimator choice, so `C` was not active and was never read."""
    space = load_search_space(BINARY)
    with pytest.raises(SearchSpaceError, match=r"`estimator` must be one of") as info:
        space.outside_safe_ranges({"estimator": "Logistic", "C": 1000.0})
    assert info.value.path == "estimator"


def test_a_recorded_point_inside_every_safe_range_passes() -> None:
    assert small_space().outside_safe_ranges({"scaler": "standard", "estimator": "logistic"}) == []
