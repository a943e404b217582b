"""A choice the space keeps but declares under another branch than the one a history
configuration took: the space builds that configuration with the choice's default, as
if it had dropped the choice. A history configuration that held another value is not
the model the space builds, and is skipped; one that held the default is kept."""

from __future__ import annotations

from typing import Any

import pytest

from retune.space import SearchSpace, parse_search_space
from retune.warmstart import EnqueueTopK, History, HistoryTrial

_GB = {"gb_max_depth": {"type": "int", "low": 1, "high": 4}}
_C = {"C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}}


def _space(under_logistic: dict[str, Any]) -> SearchSpace:
    """A space that declares ``under_logistic`` only under ``estimator: logistic``."""
    return parse_search_space(
        {
            "name": "moved",
            "params": {
                "estimator": {
                    "type": "categorical",
                    "choices": ["logistic", "gradient_boosting"],
                    "when": {"logistic": {**_C, **under_logistic}, "gradient_boosting": _GB},
                }
            },
        }
    )


_CLASS_WEIGHT = {"class_weight": {"type": "categorical", "choices": ["none", "balanced"]}}
_SELECTOR = {
    "selector": {
        "type": "categorical",
        "choices": ["none", "k_best"],
        "when": {"k_best": {"select_k": {"type": "int", "low": 1, "high": 3}}},
    }
}

#: (the moved declaration, a GB configuration holding a non-default value of it, the
#: same configuration holding its default)
CASES = {
    "class_weight": (
        _CLASS_WEIGHT,
        {"class_weight": "balanced", "estimator": "gradient_boosting", "gb_max_depth": 2},
        {"class_weight": "none", "estimator": "gradient_boosting", "gb_max_depth": 2},
    ),
    "selector_with_children": (
        _SELECTOR,
        {"selector": "k_best", "select_k": 2, "estimator": "gradient_boosting", "gb_max_depth": 2},
        {"selector": "none", "estimator": "gradient_boosting", "gb_max_depth": 2},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_project_skips_a_choice_inactive_in_the_configuration_s_branch(case: str) -> None:
    declaration, other, default = CASES[case]
    space = _space(declaration)
    assert space.project(other) is None
    assert space.project(default) == {"estimator": "gradient_boosting", "gb_max_depth": 2}


@pytest.mark.parametrize("case", list(CASES))
def test_project_keeps_the_choice_in_the_branch_that_declares_it(case: str) -> None:
    declaration, other, _ = CASES[case]
    space = _space(declaration)
    logistic = {
        **{k: v for k, v in other.items() if k not in ("estimator", "gb_max_depth")},
        "estimator": "logistic",
        "C": 0.5,
    }
    assert space.project(logistic) == logistic


@pytest.mark.parametrize("case", list(CASES))
def test_enqueue_top_k_skips_the_non_default_history_configuration(case: str) -> None:
    declaration, other, default = CASES[case]
    history = History.from_trials(
        [
            HistoryTrial(study_name="old", number=0, params=other, value=0.30),
            HistoryTrial(study_name="old", number=1, params=default, value=0.60),
        ]
    )
    plan = EnqueueTopK(k=5).plan(history, _space(declaration))
    assert list(plan.enqueue) == [{"estimator": "gradient_boosting", "gb_max_depth": 2}]
    assert any("skipped" in note for note in plan.notes), plan.notes


def test_project_skips_a_nested_parent_choice_under_an_inactive_branch() -> None:
    """``selector`` under ``scaler: standard`` under ``estimator: logistic``: a GB
    configuration that selected k_best is skipped, whatever branch it reached."""
    space = parse_search_space(
        {
            "name": "nested",
            "params": {
                "estimator": {
                    "type": "categorical",
                    "choices": ["logistic", "gradient_boosting"],
                    "when": {
                        "logistic": {
                            **_C,
                            "scaler": {
                                "type": "categorical",
                                "choices": ["none", "standard"],
                                "when": {"standard": _SELECTOR},
                            },
                        },
                        "gradient_boosting": _GB,
                    },
                }
            },
        }
    )
    lone = {"estimator": "logistic", "C": 0.5, "scaler": "none", "selector": "k_best"}
    assert space.project(lone) is None
    under = {"estimator": "logistic", "C": 0.5, "scaler": "standard", "selector": "k_best"}
    assert space.project({**under, "select_k": 2}) == {**under, "select_k": 2}
