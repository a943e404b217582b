"""The safe-range gate reads a parameter set as the pipeline builds it: an absent name at
its default, and a set the pipeline would not build (an unknown name, a choice it does not
take) is not checked at all rather than passed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from retune_data import small_space

from retune import SearchSpaceError
from retune.space import build_pipeline, load_search_space

BINARY = Path(__file__).resolve().parents[2] / "configs" / "search_spaces" / "binary_tabular.yaml"


def test_a_parameter_whose_parent_was_left_out_is_checked_under_the_default_parent() -> None:
    """`{'C': 1000.0}` builds LogisticRegression(C=1000) (the default estimator), and the
    gate skipped C because `estimator` was absent."""
    space = load_search_space(BINARY)
    assert build_pipeline({"C": 1000.0}, n_features=4, seed=0).steps[-1][1].C == 1000.0
    assert space.outside_safe_ranges({"C": 1000.0}) == [
        "`C` = 1000.0 is outside its safe range [0.001, 10.0]"
    ]
    assert space.outside_safe_ranges({"C": 5.0}) == []


def test_an_absent_parameter_is_checked_at_the_default_the_pipeline_builds() -> None:
    space = small_space()  # scaler: safe [standard]; the pipeline's default is none
    assert space.outside_safe_ranges({"estimator": "logistic", "C": 1.0}) == [
        "`scaler` = 'none' (not recorded: the pipeline's default) is not a safe choice ['standard']"
    ]


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
